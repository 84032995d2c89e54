" Loads each fixture once and, for each syntax file in turn, reports the syntax items at the
" asserted positions: tests/test_vim_syntax.py runs every mutant of the Vim syntax in one Vim.
" Input g:mutants_job: a JSON file {"syntaxes": [path...], "fixtures": [{"path": path,
" "positions": [[line, col]...]}...], "out": path}; lines and columns count from 1.
" Output: one JSON line per (syntax, fixture): {"syntax": i, "fixture": k, "items": [[name...]]}.
let s:job = json_decode(join(readfile(g:mutants_job), "\n"))
let s:out = []
for s:k in range(len(s:job.fixtures))
  let s:fixture = s:job.fixtures[s:k]
  execute 'edit' fnameescape(s:fixture.path)
  for s:i in range(len(s:job.syntaxes))
    syntax clear
    unlet! b:current_syntax
    execute 'source' fnameescape(s:job.syntaxes[s:i])
    " Parse top to bottom first, as a redraw does, before asking about single positions.
    for s:lnum in range(1, line('$'))
      call synID(s:lnum, max([1, len(getline(s:lnum))]), 1)
    endfor
    let s:items = []
    for [s:lnum, s:col] in s:fixture.positions
      let s:here = [synIDattr(synID(s:lnum, s:col, 1), 'name')]
      let s:here += map(synstack(s:lnum, s:col), 'synIDattr(v:val, "name")')
      call add(s:items, filter(s:here, '!empty(v:val)'))
    endfor
    call add(s:out, json_encode({'syntax': s:i, 'fixture': s:k, 'items': s:items}))
  endfor
endfor
call writefile(s:out, s:job.out)
