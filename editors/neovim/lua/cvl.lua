-- CVL for Neovim (0.7 and later): starts the language server `cvl lsp` for
-- CVL buffers and test parameters files (`*.params`, filetype cvlparams:
-- checked against their appliance, names completed), one client per
-- workspace folder. Filetype detection comes
-- from ftdetect/cvl.vim; highlighting from tree-sitter when the CVL parser
-- is installed (parser/cvl.so on the runtime path, built from
-- editors/tree-sitter-cvl; its queries are queries/cvl/ beside this), else
-- from syntax/cvl.vim.
--
--   require("cvl").setup()                          -- `cvl` on $PATH
--   require("cvl").setup({ cmd = { "/path/to/cvl", "lsp" } })
--   require("cvl").setup({ treesitter = false })    -- syntax/cvl.vim only
--   require("cvl").setup({ codelens = false })      -- no plan lenses
--
-- Code lenses (`:lua vim.lsp.codelens.run()` on one): the plan of a
-- deployed object against the utility's state, and where an appliance is
-- used and runs; type hierarchy through `textDocument/prepareTypeHierarchy`.
local M = {}

local clients = {}

local function root_of(path)
  -- The folder holding cvl.lock or .git above the file, else the file's own.
  local dir = vim.fn.fnamemodify(path, ":p:h")
  for _, marker in ipairs({ "cvl.lock", ".git" }) do
    -- A folder's `:p` ends in a slash (`/proj/.git/`), a file's does not
    -- (`/proj/cvl.lock`): the root is two heads up for one, one for the other.
    local found = vim.fn.finddir(marker, dir .. ";")
    if found ~= "" then
      return vim.fn.fnamemodify(found, ":p:h:h")
    end
    found = vim.fn.findfile(marker, dir .. ";")
    if found ~= "" then
      return vim.fn.fnamemodify(found, ":p:h")
    end
  end
  return dir
end

-- Exposed for tests.
M.root_of = root_of

-- Tree-sitter highlighting for `buf` when the CVL parser is installed:
-- whether it started.
local function treesitter(buf)
  local add = (vim.treesitter.language and vim.treesitter.language.add)
    or vim.treesitter.require_language
  if not add or not pcall(add, "cvl") then
    return false
  end
  if vim.treesitter.start then
    vim.treesitter.start(buf, "cvl") -- 0.8 and later
  else
    vim.treesitter.highlighter.new(vim.treesitter.get_parser(buf, "cvl"))
    vim.bo[buf].syntax = ""
  end
  return true
end

-- Exposed for tests.
M.treesitter = treesitter

-- A scratch buffer in a new window, holding `text`.
local function scratch(text, filetype)
  vim.cmd("new")
  local buf = vim.api.nvim_get_current_buf()
  vim.bo[buf].buftype = "nofile"
  vim.bo[buf].bufhidden = "wipe"
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, vim.split(text, "\n", { plain = true }))
  if filetype then
    vim.bo[buf].filetype = filetype
  end
end

-- The commands the server's code lenses name, carried out here: the plan
-- (`cvl.showPlan`) and the graph (`cvl.showGraph`, DOT) in a scratch
-- buffer, asked of the server (`cvl.planText`, `cvl.graphText`); the uses of an appliance
-- (`cvl.showReferences`) in the quickfix list.
local function server_text(server_command, filetype)
  return function(command, ctx)
    local client = vim.lsp.get_client_by_id(ctx.client_id)
    local answer = client.request_sync("workspace/executeCommand", {
      command = server_command,
      arguments = command.arguments,
    }, 20000, ctx.bufnr)
    if answer and answer.result then
      scratch(answer.result, filetype)
    else
      vim.notify("cvl: " .. vim.inspect(answer and answer.err), vim.log.levels.WARN)
    end
  end
end

vim.lsp.commands["cvl.showPlan"] = server_text("cvl.planText", nil)
vim.lsp.commands["cvl.showGraph"] = server_text("cvl.graphText", "dot")
vim.lsp.commands["cvl.showReferences"] = function(command)
  local items = vim.lsp.util.locations_to_items(command.arguments[3] or {}, "utf-16")
  vim.fn.setqflist({}, " ", { title = "cvl: uses", items = items })
  vim.cmd("copen")
end

function M.setup(opts)
  opts = opts or {}
  local cmd = opts.cmd or { "cvl", "lsp" }
  vim.api.nvim_create_autocmd("FileType", {
    pattern = { "cvl", "cvlparams" },
    callback = function(args)
      if opts.treesitter ~= false and vim.bo[args.buf].filetype == "cvl" then
        treesitter(args.buf)
      end
      local root = root_of(vim.api.nvim_buf_get_name(args.buf))
      local id = clients[root]
      if id == nil or vim.lsp.get_client_by_id(id) == nil then
        id = vim.lsp.start_client({ name = "cvl", cmd = cmd, root_dir = root })
        clients[root] = id
      end
      vim.lsp.buf_attach_client(args.buf, id)
      -- The plan's code lenses (and what uses each appliance), kept fresh.
      if opts.codelens ~= false then
        vim.api.nvim_create_autocmd({ "BufEnter", "InsertLeave", "CursorHold" }, {
          buffer = args.buf,
          callback = function()
            pcall(vim.lsp.codelens.refresh)
          end,
        })
      end
    end,
  })
end

return M
