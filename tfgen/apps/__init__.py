"""The absl apps behind the console scripts (tfgen-train, ...) and bin/*.py."""

import os

# Keep TensorFlow's C++ start-up chatter out of the user's terminal unless they ask for it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
