"""Names vulture (dead-code finder, run by tests/run.sh) reports that are used, each with why.

Reviewed by hand: add a name here only with the reason it is alive. Anything else vulture
reports is dead code: connect it or delete it.
"""
# ruff: noqa
_ = object()

_.programs  # FakeRunner (backends/batch.py): the fake batch runner's record, read by tests
mpi_processes  # Resources field: read by name in face/listing.py and annotations' table
_.reads  # FileState: how many files were hashed this run, the memo's own measure (tests)
aliases  # VinefileLexer: Pygments reads these class attributes
filenames  # VinefileLexer: Pygments
mimetypes  # VinefileLexer: Pygments
tokens  # VinefileLexer: Pygments
_.convert  # click.ParamType.convert: click calls it
_.assignment  # parser.py: Lark's transformer calls methods named after grammar rules
_.bad_assignment  # parser.py: Lark
_.annotation  # parser.py: Lark
_.HEADER_AND_COMMAND  # parser.py: Lark (a terminal callback)
_.forgotten  # Manager: dead intermediates dropped from workers, ever (tests check the count)
_.starts  # LibraryInstance: process starts, 1 unless it died (tests check restarts)
_.true  # language/jxparse.py: Lark's transformer calls methods named after grammar rules
_.false  # jxparse.py: Lark
_.null  # jxparse.py: Lark
_.array  # jxparse.py: Lark
_.object  # jxparse.py: Lark
_.comprehension  # jxparse.py: Lark
_.binary  # jxparse.py: Lark
_.unary  # jxparse.py: Lark
_.slice  # jxparse.py: Lark
_.method  # jxparse.py: Lark
_.daemon_threads  # face/statuspage.py: ThreadingHTTPServer reads it (request threads die with the run)
server_version  # statuspage.py: BaseHTTPRequestHandler sends it as the Server header
_.do_GET  # statuspage.py: http.server calls do_<METHOD>
_.log_message  # statuspage.py: http.server calls it for every request (silenced)
_.prune_command  # face/cachecmd.py: click registers it as `vinemake cache prune`
_.address_family  # face/statuspage.py: socketserver reads it to open an IPv6 socket
_range  # language/jxfunctions.py: each built-in is found by name, `_<name>` for keywords.JX_FUNCTIONS
_format  # jxfunctions.py: found by name
_join  # jxfunctions.py: found by name
_basename  # jxfunctions.py: found by name
_dirname  # jxfunctions.py: found by name
_len  # jxfunctions.py: found by name
_schema  # jxfunctions.py: found by name
_like  # jxfunctions.py: found by name
_values  # jxfunctions.py: found by name
_items  # jxfunctions.py: found by name
_.disabled  # worker/standby.py: logging.Logger's own attribute, set to re-enable a logger
_._field_type  # common/records.py: dataclasses.fields reads it on every Field
_.__dataclass_params__  # common/records.py: dataclasses reads it (a frozen base's check)
_.__annotations__  # common/records.py: inspect.signature reads the generated __init__'s
_.__match_args__  # common/records.py: the match statement reads it
__getattr__  # wire/tls.py: the module's own, Python calls it for a name the module lacks
