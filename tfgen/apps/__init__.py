"""The absl apps behind the console scripts (tfgen-train, ...) and bin/*.py."""

import os

# Keep TensorFlow's C++ INFO and WARNING lines out of the user's terminal unless they ask for
# them; set here, before any app module can import TensorFlow, which reads it once. The lines it
# prints before reading it are filtered by common.quiet_tensorflow_start().
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
