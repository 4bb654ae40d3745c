"""The episode loop and the model providers behind one small interface."""
