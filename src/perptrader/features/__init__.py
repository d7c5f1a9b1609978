"""Features and labels: families of no-look-ahead features over the loader's research
frame, named feature sets, the build pipeline, the look-ahead proof and the live path."""
