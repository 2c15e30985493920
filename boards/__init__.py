"""Board descriptors and the local PlatformIO platform (to come)."""
