import sys

from instructor.grading.cli import main

sys.exit(main())
