" Vim syntax for Makeflow's JX workflows as vinemake reads them (grammar/jx.lark): JSON with
" `#` comments, names, operators, comprehensions and calls. The word lists below must equal
" vinemake/keywords.py: tests/test_jx_editors.py checks.
if exists('b:current_syntax')
  finish
endif

" Items at the same position: a keyword beats a match or region, and of two matches or regions
" the one defined last wins. So the catch-all error comes first and comments last.

" A character JX has no token for: a lone `=`, `&` or `|`, single quotes, `;`, `$`, `@`, ...
syn match jxError /\S/
syn match jxName /\<\h\w*/
" A call of a function vinemake does not have (its evaluator refuses it), then the built-ins.
syn match jxCallError /\<\h\w*\ze\s*(/
syn match jxBuiltin /\<\%(range\|format\|join\|ceil\|floor\|basename\|dirname\|listdir\|escape\|len\|fetch\|schema\|like\|keys\|values\|items\|template\|select\|where\|project\|let\|error\)\ze\s*(/
syn keyword jxConstant true false null
syn keyword jxClause for in if
syn keyword jxWordOperator and or not
syn match jxOperator /==\|!=\|<=\|>=\|<\|>\|&&\|||\|!\|[-+*/%]/
syn match jxDelimiter /[,:.[\]{}()]/
" After the delimiters: `.25` is a number.
syn match jxNumber /\%(\d\+\.\=\d*\|\.\d\+\)\%([eE][-+]\=\d\+\)\=/
" Only double quotes; a string may run over lines; a backslash escapes any character.
syn match jxEscape /\\\%(u\x\{4}\|.\|$\)/ contained
syn region jxString start=/"/ skip=/\\./ end=/"/ contains=jxEscape
" A key vinemake reads, before its `:`.
syn match jxKey /"\%(allocation\|args\|categories\|category\|command\|cores\|dag_name\|default_category\|define\|disk\|environment\|execution_path\|gpus\|inputs\|local_job\|memory\|mpi-processes\|mpi_processes\|outputs\|path\|resources\|rules\|task_name\|wall-time\|wall_time\|workflow\)"\ze\s*:/
syn match jxComment /#.*$/

syn sync minlines=200

hi def link jxError Error
hi def link jxCallError Error
hi def link jxName Identifier
hi def link jxBuiltin Function
hi def link jxConstant Constant
hi def link jxClause Repeat
hi def link jxWordOperator Operator
hi def link jxOperator Operator
hi def link jxDelimiter Delimiter
hi def link jxNumber Number
hi def link jxEscape SpecialChar
hi def link jxString String
hi def link jxKey Keyword
hi def link jxComment Comment

let b:current_syntax = 'jx'
