"""Small shared types and helpers used by every stage."""
