"""Same absl app as the console script tfgen-presets: python bin/presets.py --help."""

from tfgen.apps import presets

if __name__ == "__main__":
  presets.run()
