"""Research studies: tracked trials, honest statistics, a verdict and a lockbox."""
