"""Training recipe: synthetic speech data (text, tts, augment, data)."""
