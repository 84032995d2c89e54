" Vinefiles and Makeflow files (vinemake): Vinefile, *.vine, Makeflow, *.makeflow.
autocmd BufNewFile,BufRead Vinefile,*.vine,Makeflow,*.makeflow setfiletype vinefile
