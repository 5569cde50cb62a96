-- CVL for Neovim (0.7 and later): starts the language server `cvl lsp` for
-- CVL buffers, one client per workspace folder. Filetype detection and
-- highlighting come from ftdetect/cvl.vim and syntax/cvl.vim beside this.
--
--   require("cvl").setup()                          -- `cvl` on $PATH
--   require("cvl").setup({ cmd = { "/path/to/cvl", "lsp" } })
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

function M.setup(opts)
  opts = opts or {}
  local cmd = opts.cmd or { "cvl", "lsp" }
  vim.api.nvim_create_autocmd("FileType", {
    pattern = "cvl",
    callback = function(args)
      local root = root_of(vim.api.nvim_buf_get_name(args.buf))
      local id = clients[root]
      if id == nil or vim.lsp.get_client_by_id(id) == nil then
        id = vim.lsp.start_client({ name = "cvl", cmd = cmd, root_dir = root })
        clients[root] = id
      end
      vim.lsp.buf_attach_client(args.buf, id)
    end,
  })
end

return M
