"""Reserved words of the language: the one list parser, editor grammars and lexer share."""

# `.MAKEFLOW <word> ...` directives.
MAKEFLOW_DIRECTIVES = ("CATEGORY", "CORES", "MEMORY", "DISK", "GPUS", "WALL_TIME",
                       "MPI_PROCESSES", "MODE")
# Values `.MAKEFLOW MODE` accepts.
ALLOCATION_MODES = ("MAX_THROUGHPUT", "MIN_WASTE", "FIXED")
# Other dot-directives.
DOT_DIRECTIVES = (".MAKEFLOW", ".SIZE")
# `@word` annotations above a rule header, and the keys each accepts.
ANNOTATIONS = {
    "resources": ("cores", "memory", "disk", "gpus", "wall_time"),
    "retries": (),
    "temp": (),
    "cache": ("forever",),
    "library": ("slots",),
    "call": (),
    "mini": (),
    "environment": (),
}
# Command prefixes.
COMMAND_PREFIXES = ("LOCAL", "MAKEFLOW")
# Variables with meaning to vinemake.
RESOURCE_VARIABLES = ("CORES", "MEMORY", "DISK", "GPUS", "WALL_TIME")
SPECIAL_VARIABLES = ("CATEGORY", "MAKEFLOW_INPUTS", "MAKEFLOW_OUTPUTS", "BATCH_OPTIONS",
                     "BATCH_LOCAL", "ENVIRONMENT") + RESOURCE_VARIABLES
# Schemes of a URL source (`https://host/words.txt`), as common/spec.py's URL_SCHEMES.
URL_SCHEMES = ("http", "https", "file")
# The `export` statement.
EXPORT = "export"
