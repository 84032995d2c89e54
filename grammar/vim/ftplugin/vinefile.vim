" Vinefile buffers: `#` comments, and TABs kept as TABs so command lines stay commands.
if exists('b:did_ftplugin')
  finish
endif
let b:did_ftplugin = 1

setlocal commentstring=#\ %s
setlocal comments=:#
" A command line starts with a TAB; expanding it would still work, but Makeflow users expect TABs.
setlocal noexpandtab
setlocal formatoptions-=t

let b:undo_ftplugin = 'setlocal commentstring< comments< expandtab< formatoptions<'
