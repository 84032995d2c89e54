" Vim syntax for Vinefiles (Makeflow's language plus vinemake's @ annotations).
" The word lists below must equal vinemake/keywords.py: tests/test_editor_keywords.py checks.
if exists('b:current_syntax')
  finish
endif

" Items at the same position: a keyword beats a match or region, and of two matches or regions
" the one defined last wins. So the catch-all rule header comes first and comments last.

" ---- what any expanded text may hold: values, file lists, commands ----
" A backslash escapes the next character (`\$` among them), so an escaped `#` starts no comment.
syn match vinefileEscape /\\./ contained
syn match vinefileContinuation /\\$/ contained
syn match vinefileDollarError /\$\$/ contained
syn match vinefileVariable /\$\h\w*/ contained
syn match vinefileVariable /\$(\h\w*)/ contained
syn match vinefileVariable /\${\h\w*}/ contained
syn region vinefileString start=/"/ skip=/\\./ excludenl end=/"\|\\\@<!$/ contained
      \ contains=vinefileVariable,vinefileEscape,vinefileDollarError
syn region vinefileString start=/'/ excludenl end=/'\|\\\@<!$/ contained
syn cluster vinefileText contains=vinefileComment,vinefileString,vinefileVariable,
      \vinefileEscape,vinefileContinuation,vinefileDollarError

" ---- rule headers: targets : sources ----
syn match vinefileRename /->/ contained
syn match vinefileTarget /\%([^ \t:"'$#\\-]\|-\%(>\)\@!\|\$\%([A-Za-z_({$]\)\@!\)\+/ contained
syn match vinefileSource /\%([^ \t:"'$#\\-]\|-\%(>\)\@!\|\$\%([A-Za-z_({$]\)\@!\)\+/ contained
" A URL source (`https://host:port/path`), up to a blank or its `->` rename.
syn match vinefileUrl /\<\%(http\|https\|file\):\/\/[^ \t#"'\\]\{-}\ze\%(->\|\s\|$\)/ contained
syn region vinefileTargets start=/^[^ \t#:]\@=/ end=/\ze:\|\\\@<!$/
      \ contains=@vinefileText,vinefileRename,vinefileTarget
syn match vinefileColon /:/ nextgroup=vinefileSources
syn region vinefileSources start=/\ze./ end=/\\\@<!$/ contained
      \ contains=@vinefileText,vinefileRename,vinefileSource,vinefileUrl

" ---- command lines ----
syn keyword vinefilePrefix contained LOCAL MAKEFLOW
syn match vinefileCommandStart /^[ \t]\+/ contained nextgroup=vinefilePrefix
" An indented line that starts with `#` is a comment line, not a command.
syn region vinefileCommand start=/^[ \t]\+[^ \t#]\@=/ end=/\\\@<!$/
      \ contains=vinefileCommandStart,@vinefileText

" ---- assignments: NAME=value, NAME += value, @NAME=value (rule-local) ----
syn region vinefileValue start=/\ze./ end=/\\\@<!$/ contained contains=@vinefileText
syn match vinefileAssignOp /+\?=/ contained skipwhite nextgroup=vinefileValue
syn match vinefileAssignName /^@\?\h\w*\ze\s*+\?=/ skipwhite nextgroup=vinefileAssignOp
syn match vinefileSpecialVar
      \ /^@\?\%(CATEGORY\|MAKEFLOW_INPUTS\|MAKEFLOW_OUTPUTS\|BATCH_OPTIONS\|BATCH_LOCAL\|ENVIRONMENT\|CORES\|MEMORY\|DISK\|GPUS\|WALL_TIME\)\ze\s*+\?=/
      \ skipwhite nextgroup=vinefileAssignOp
" Operators Makeflow does not have, and a value with no name.
syn match vinefileAssignError /^@\?\h\w*\s*[-?:!]=/ skipwhite nextgroup=vinefileValue
syn match vinefileAssignError /^+\?=/ nextgroup=vinefileValue

" ---- export A B=value ----
syn match vinefileExportName /\<\h\w*\>/ contained
syn region vinefileExportValue start=/\ze\S/ excludenl end=/\ze\s\|$/ contained
      \ contains=vinefileString,vinefileVariable,vinefileEscape,vinefileDollarError
syn match vinefileExportOp /=/ contained nextgroup=vinefileExportValue
syn match vinefileExportAssign /\<\h\w*\ze=/ contained nextgroup=vinefileExportOp
syn region vinefileExportLine matchgroup=vinefileExport start=/^export\>/ end=/\\\@<!$/
      \ contains=vinefileExportName,vinefileExportAssign,@vinefileText

" ---- .MAKEFLOW and .SIZE directives ----
syn match vinefileNumber /\%(\w\|\.\)\@<!\d\+\%(\.\d\+\)\?\%([KMGTPkmgtp]i\?[Bb]\?\|[Bb]\|[smh]\)\?\>/
      \ contained
syn keyword vinefileMode contained MAX_THROUGHPUT MIN_WASTE FIXED
syn keyword vinefileDirectiveWord contained CATEGORY CORES MEMORY DISK GPUS WALL_TIME MPI_PROCESSES MODE
syn match vinefileDirectiveError /\%(^\.MAKEFLOW\s\+\)\@<=\S\+/ contained
syn match vinefileCategoryName /\%(^\.MAKEFLOW\s\+CATEGORY\s\+\)\@<=[^ \t#]\+/ contained
syn match vinefileSizeFile /\%(^\.SIZE\s\+\)\@<=\%([^ \t:"'$#\\-]\|-\%(>\)\@!\|\$\%([A-Za-z_({$]\)\@!\)\+/ contained
syn match vinefileUnknownDirective /^\.\h\w*\%([ \t#]\|$\)\@=/
syn region vinefileDirectiveLine matchgroup=vinefileDirective start=/^\.\%(MAKEFLOW\|SIZE\)\>/
      \ end=/\\\@<!$/
      \ contains=vinefileDirectiveWord,vinefileMode,vinefileDirectiveError,vinefileCategoryName,
      \vinefileSizeFile,vinefileNumber,@vinefileText

" ---- @annotations, each with its own keys ----
syn match vinefileAnnotationOp /=/ contained
syn match vinefileKeyError /\<\h\w*\ze=/ contained
syn match vinefileLibraryName /\%(^@\%(library\|call\)\s\+\)\@<=\h\w*/ contained
syn cluster vinefileAnnotationArgs contains=vinefileAnnotationOp,vinefileKeyError,vinefileNumber,
      \@vinefileText
syn keyword vinefileResourcesKey contained cores memory disk gpus wall_time
syn keyword vinefileCacheKey contained forever
syn keyword vinefileLibraryKey contained slots
syn match vinefileAnnotationError /^@\h\w*/
syn region vinefileAnnotationLine matchgroup=vinefileAnnotation start=/^@resources\>/
      \ end=/\\\@<!$/ contains=vinefileResourcesKey,@vinefileAnnotationArgs
syn region vinefileAnnotationLine matchgroup=vinefileAnnotation start=/^@retries\>/
      \ end=/\\\@<!$/ contains=@vinefileAnnotationArgs
syn region vinefileAnnotationLine matchgroup=vinefileAnnotation start=/^@temp\>/
      \ end=/\\\@<!$/ contains=@vinefileAnnotationArgs
syn region vinefileAnnotationLine matchgroup=vinefileAnnotation start=/^@mini\>/
      \ end=/\\\@<!$/ contains=@vinefileAnnotationArgs
syn match vinefileEnvironmentFile /\%(^@environment\s\+\)\@<=\%([^ \t:"'$#\\-]\|-\%(>\)\@!\)\+/ contained
syn region vinefileAnnotationLine matchgroup=vinefileAnnotation start=/^@environment\>/
      \ end=/\\\@<!$/ contains=vinefileEnvironmentFile,@vinefileAnnotationArgs
syn region vinefileAnnotationLine matchgroup=vinefileAnnotation start=/^@cache\>/
      \ end=/\\\@<!$/ contains=vinefileCacheKey,@vinefileAnnotationArgs
syn region vinefileAnnotationLine matchgroup=vinefileAnnotation start=/^@library\>/
      \ end=/\\\@<!$/ contains=vinefileLibraryName,vinefileLibraryKey,@vinefileAnnotationArgs
syn region vinefileAnnotationLine matchgroup=vinefileAnnotation start=/^@call\>/
      \ end=/\\\@<!$/ contains=vinefileLibraryName,@vinefileAnnotationArgs
" `@NAME=value` is a rule-local assignment, not an annotation: defined after, so it wins.
syn match vinefileAssignName /^@\h\w*\ze\s*+\?=/ skipwhite nextgroup=vinefileAssignOp
syn match vinefileSpecialVar
      \ /^@\%(CATEGORY\|MAKEFLOW_INPUTS\|MAKEFLOW_OUTPUTS\|BATCH_OPTIONS\|BATCH_LOCAL\|ENVIRONMENT\|CORES\|MEMORY\|DISK\|GPUS\|WALL_TIME\)\ze\s*+\?=/
      \ skipwhite nextgroup=vinefileAssignOp

" ---- comments: `#` outside quotes, to the end of the line ----
syn match vinefileComment excludenl /#.*$/ contains=@Spell

" Continued lines need the lines above them; generated Vinefiles can be huge, so not fromstart.
syn sync minlines=50

hi def link vinefileComment Comment
hi def link vinefileAssignName Identifier
hi def link vinefileSpecialVar Special
hi def link vinefileAssignOp Operator
hi def link vinefileExportOp Operator
hi def link vinefileAnnotationOp Operator
hi def link vinefileVariable PreProc
hi def link vinefileEscape SpecialChar
hi def link vinefileContinuation SpecialChar
hi def link vinefileString String
hi def link vinefileExport Keyword
hi def link vinefileExportName Identifier
hi def link vinefileExportAssign Identifier
hi def link vinefileDirective PreProc
hi def link vinefileDirectiveWord Constant
hi def link vinefileMode Constant
hi def link vinefileCategoryName Type
hi def link vinefileSizeFile Normal
hi def link vinefileNumber Number
hi def link vinefileAnnotation Statement
hi def link vinefileResourcesKey vinefileAnnotationKey
hi def link vinefileCacheKey vinefileAnnotationKey
hi def link vinefileLibraryKey vinefileAnnotationKey
hi def link vinefileAnnotationKey Type
hi def link vinefileLibraryName Function
hi def link vinefileTarget Function
hi def link vinefileSource Normal
hi def link vinefileEnvironmentFile Normal
hi def link vinefileUrl Underlined
hi def link vinefileColon Delimiter
hi def link vinefileRename Operator
hi def link vinefilePrefix Statement
hi def link vinefileDollarError Error
hi def link vinefileAssignError Error
hi def link vinefileDirectiveError Error
hi def link vinefileUnknownDirective Error
hi def link vinefileKeyError Error
hi def link vinefileAnnotationError Error

let b:current_syntax = 'vinefile'
