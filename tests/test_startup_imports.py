"""Start-up: tfgen's modules and commands import the slow optional packages only where used.

Each check imports in a fresh interpreter (a subprocess) and reads `sys.modules`; nothing here
is timed (bench/loop_speed.py --parts=startup times the start-up, docs/speed.md).
"""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# keras-tuner is for tfgen-tune only; TFDS for the data sources that read TFDS data sets, when
# they read them.
NEVER_AT_IMPORT = ("keras_tuner", "tensorflow_datasets")
# What Keras would import with itself for features tfgen does not use (apps/common.py).
KERAS_EXTRAS = ("sklearn", "matplotlib")

_PLAIN_IMPORT = r"""
import sys
import {module}
print(" ".join(sorted(name for name in {names!r} if name in sys.modules)))
"""

# A command's start as `common.run` makes it: its flags parsed (tfgen-train's config file is
# checked then, which imports tfgen.models), then what its main imports.
_COMMAND_START = r"""
import sys
from tfgen.apps import common
import {app} as command

def main(argv):
  del argv
  common.import_keras()
  {imports}
  print(" ".join(sorted(name for name in {names!r} if name in sys.modules)))

common.run(main, "probe", command.__name__)
"""


def _imported(script, *args):
  """The names a fresh interpreter running `script` finds in sys.modules (its last line)."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  result = subprocess.run([sys.executable, "-c", script, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.strip().splitlines()
  return set(lines[-1].split()) if lines else set()


@pytest.mark.parametrize("module", ["tfgen.models", "tfgen.data", "tfgen.train",
                                    "tfgen.apps.train", "tfgen.apps.sample",
                                    "tfgen.apps.evaluate"])
def test_importing_a_module_leaves_keras_tuner_and_tfds_out(module):
  found = _imported(_PLAIN_IMPORT.format(module=module, names=NEVER_AT_IMPORT))
  # scikit-learn and matplotlib come with a plain `import tensorflow` (through Keras) and stay
  # so for a library import: hiding them would take keras.wrappers from a notebook's user. The
  # commands hide them while Keras is imported (the test below).
  assert not found


@pytest.mark.parametrize("app, imports, args", [
    ("tfgen.apps.train", "from tfgen import train", ["--config=configs/iwae.py",
                                                     "--workdir=/nonexistent/probe"]),
    ("tfgen.apps.sample", "from tfgen import models, sampling", []),
    ("tfgen.apps.evaluate", "from tfgen import evaluate", []),
])
def test_a_command_starts_without_keras_extras_keras_tuner_and_tfds(app, imports, args):
  script = _COMMAND_START.format(app=app, imports=imports,
                                 names=NEVER_AT_IMPORT + KERAS_EXTRAS)
  assert not _imported(script, *args)
