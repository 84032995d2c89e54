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

# JX workflows (grammar/jx.lark, language/jxworkflow.py, language/jxfunctions.py).
# The keys of the workflow object, of a rule, of a category and of a file object.
JX_WORKFLOW_KEYS = ("rules", "define", "environment", "categories", "default_category")
JX_RULE_KEYS = ("command", "workflow", "args", "inputs", "outputs", "local_job", "category",
                "resources", "environment", "allocation")
JX_CATEGORY_KEYS = ("resources", "environment", "allocation")
JX_FILE_KEYS = ("dag_name", "task_name", "path", "execution_path")
# The keys of `resources`, with the Vinefile variable each sets (cctools spells them with `-`).
JX_RESOURCE_KEYS = {"cores": "CORES", "memory": "MEMORY", "disk": "DISK", "gpus": "GPUS",
                    "wall-time": "WALL_TIME", "wall_time": "WALL_TIME",
                    "mpi-processes": "MPI_PROCESSES", "mpi_processes": "MPI_PROCESSES"}
# Every key that means something to vinemake somewhere in a workflow (editors mark them).
JX_KEYS = tuple(sorted(set(JX_WORKFLOW_KEYS + JX_RULE_KEYS + JX_CATEGORY_KEYS + JX_FILE_KEYS
                           + tuple(JX_RESOURCE_KEYS))))
# Built-in functions: jxfunctions.py implements each under the name `_<name>`.
JX_FUNCTIONS = ("range", "format", "join", "ceil", "floor", "basename", "dirname", "listdir",
                "escape", "len", "fetch", "schema", "like", "keys", "values", "items",
                "template", "select", "where", "project", "let", "error")
# Reserved words: the constants, the comprehension's words and the word operators.
JX_CONSTANTS = ("true", "false", "null")
JX_CLAUSES = ("for", "in", "if")
JX_WORD_OPERATORS = ("and", "or", "not")
