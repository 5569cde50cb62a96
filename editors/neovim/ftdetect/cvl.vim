" CVL files: *.cvl
autocmd BufRead,BufNewFile *.cvl setfiletype cvl
