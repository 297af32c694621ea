"""`python -m tfless.ops.tf` prints the supported TF op list for docs/formats.md."""

from . import op_list_markdown

print(op_list_markdown())
