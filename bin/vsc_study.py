"""Same absl app as the console script tfgen-vsc-study: python bin/vsc_study.py --help."""

from tfgen.apps import vsc_study

if __name__ == "__main__":
  vsc_study.run()
