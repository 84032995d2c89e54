" Makeflow's JX workflows (vinemake): *.jx.
autocmd BufNewFile,BufRead *.jx setfiletype jx
