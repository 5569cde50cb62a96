" CVL files: *.cvl; test parameters files (`cvl test --params`): *.params
autocmd BufRead,BufNewFile *.cvl setfiletype cvl
autocmd BufRead,BufNewFile *.params setfiletype cvlparams
