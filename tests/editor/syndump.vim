" Writes what Vim made of the current buffer to g:syndump_out, for tests/test_vim_syntax.py:
" the first line holds the buffer's options, then one line per buffer line with, for every
" byte, the syntax items there (synID, then the synstack() from outside in) joined by commas,
" space-separated ('-' where no item applies).
"
" All synID() calls come first: they parse the buffer the way a redraw does, top to bottom.
" A synstack() call before that was seen to leave a line-continuation state behind wrongly.
let s:ids = []
for s:lnum in range(1, line('$'))
  call add(s:ids, map(range(1, len(getline(s:lnum))), 'synID(s:lnum, v:val, 1)'))
endfor
let s:lines = ['filetype=' . &filetype . ' commentstring=' . &commentstring
      \ . ' expandtab=' . &expandtab . ' syntax=' . get(b:, 'current_syntax', '')]
for s:lnum in range(1, line('$'))
  let s:names = []
  for s:col in range(1, len(getline(s:lnum)))
    let s:here = [synIDattr(s:ids[s:lnum - 1][s:col - 1], 'name')]
    let s:here += map(synstack(s:lnum, s:col), 'synIDattr(v:val, "name")')
    call add(s:names, empty(s:here[0]) ? '-' : join(s:here, ','))
  endfor
  call add(s:lines, join(s:names, ' '))
endfor
call writefile(s:lines, g:syndump_out)
