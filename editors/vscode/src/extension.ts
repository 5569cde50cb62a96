// The CVL extension: starts `cvl lsp` and connects VS Code to it, and
// carries out the commands the server's code lenses name: the plan and the
// graph of a deployment in a new document (asked of the server:
// `cvl.planText`, `cvl.graphText`), the uses of an appliance in the
// references view, and `cvl apply` in a terminal (never silently).
import * as vscode from "vscode";
import {
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  Location as LspLocation,
  ServerOptions,
} from "vscode-languageclient/node";

let client: LanguageClient | undefined;

async function serverText(command: string, args: unknown[]): Promise<string> {
  if (!client) {
    throw new Error("the CVL language server is not running");
  }
  const text = await client.sendRequest(ExecuteCommandRequest.type, { command, arguments: args });
  return typeof text === "string" ? text : JSON.stringify(text);
}

/// The deployment of the active editor: its URI and object (the lens's
/// arguments, or the file's only object as the server decides).
function target(args: unknown[]): [string, string] | undefined {
  if (args.length >= 2 && typeof args[0] === "string" && typeof args[1] === "string") {
    return [args[0], args[1]];
  }
  const editor = vscode.window.activeTextEditor;
  if (!editor || editor.document.languageId !== "cvl") {
    return undefined;
  }
  const match = /^\s*([A-Za-z][A-Za-z0-9_]*)\s+extends\b/m.exec(editor.document.getText());
  return match ? [editor.document.uri.toString(), match[1]] : undefined;
}

async function show(command: string, language: string, args: unknown[]): Promise<void> {
  const which = target(args);
  if (!which) {
    void vscode.window.showWarningMessage("CVL: open a deployment's .cvl file first");
    return;
  }
  const content = await serverText(command, which);
  const doc = await vscode.workspace.openTextDocument({ content, language });
  await vscode.window.showTextDocument(doc, { preview: true, viewColumn: vscode.ViewColumn.Beside });
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const command = vscode.workspace.getConfiguration("cvl").get<string>("server.path", "cvl");
  const planPreview = vscode.workspace.getConfiguration("cvl").get<boolean>("planPreview", true);
  const serverOptions: ServerOptions = { command, args: ["lsp"] };
  const clientOptions: LanguageClientOptions = {
    // CVL, and the test parameters files `cvl test --params` reads.
    documentSelector: [
      { scheme: "file", language: "cvl" },
      { scheme: "file", language: "cvl-params" },
    ],
    initializationOptions: { planPreview },
  };
  client = new LanguageClient("cvl", "CVL language server", serverOptions, clientOptions);
  context.subscriptions.push(
    client,
    vscode.commands.registerCommand("cvl.showPlan", (...args: unknown[]) =>
      show("cvl.planText", "plaintext", args),
    ),
    vscode.commands.registerCommand("cvl.showGraph", (...args: unknown[]) =>
      show("cvl.graphText", "dot", args),
    ),
    vscode.commands.registerCommand("cvl.apply", (...args: unknown[]) => {
      const which = target(args);
      if (!which) {
        void vscode.window.showWarningMessage("CVL: open a deployment's .cvl file first");
        return;
      }
      const file = vscode.Uri.parse(which[0]).fsPath;
      const terminal = vscode.window.createTerminal({ name: `cvl apply ${which[1]}` });
      terminal.show();
      // Typed, not run: the user reads the plan and approves in the terminal.
      terminal.sendText(`${command} apply --deploy ${which[1]} '${file.replace(/'/g, "'\\''")}'`, true);
    }),
    vscode.commands.registerCommand(
      "cvl.showReferences",
      (uri: string, position: { line: number; character: number }, locations: LspLocation[]) =>
        vscode.commands.executeCommand(
          "editor.action.showReferences",
          vscode.Uri.parse(uri),
          new vscode.Position(position.line, position.character),
          (locations ?? []).map(
            (l) =>
              new vscode.Location(
                vscode.Uri.parse(l.uri),
                new vscode.Range(
                  l.range.start.line,
                  l.range.start.character,
                  l.range.end.line,
                  l.range.end.character,
                ),
              ),
          ),
        ),
    ),
  );
  await client.start();
}

export async function deactivate(): Promise<void> {
  await client?.stop();
}
