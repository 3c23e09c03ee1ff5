// A tiny MCP server over stdio for amesh's tests, on the MCP TypeScript
// SDK (McpServer + StdioServerTransport).
//
//   node stdio_server.mjs <MCP_TS_SDK_DIR>
//
// The SDK directory is an argument, not an environment variable: amesh
// starts stdio servers with PATH, HOME and the configured
// environment_variables only.
//
// Tools: echo {text}; env {name} (the variable's value, or "(unset)");
// pid;
// sleep {ms}; cancelled (how many sleeps the client cancelled with
// notifications/cancelled); big {bytes} (a text of that many bytes); crash {poison?}
// (exits 3 without answering; with poison: true it first creates the file
// named by $CRASH_MARKER, and while that file exists the server exits 4
// at start, a server that cannot start).
import { createRequire } from "node:module";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const marker = process.env.CRASH_MARKER;
if (marker && existsSync(marker)) {
  process.stderr.write("poisoned: exiting at start\n");
  process.exit(4);
}

const sdkDir = process.argv[2];
if (!sdkDir) {
  process.stderr.write("usage: stdio_server.mjs <MCP_TS_SDK_DIR>\n");
  process.exit(2);
}
const require = createRequire(join(sdkDir, "package.json"));
const { McpServer } = require("@modelcontextprotocol/sdk/server/mcp.js");
const { StdioServerTransport } = require("@modelcontextprotocol/sdk/server/stdio.js");
const { z } = require("zod");

const server = new McpServer({ name: "amesh-test-stdio", version: "1.0.0" });
let cancelled = 0;
const text = (t) => ({ content: [{ type: "text", text: t }] });

server.registerTool(
  "echo",
  { description: "Echoes its text", inputSchema: { text: z.string() } },
  async ({ text: t }) => text(t),
);
server.registerTool(
  "env",
  { description: "Reads an environment variable", inputSchema: { name: z.string() } },
  async ({ name }) => text(process.env[name] ?? "(unset)"),
);
server.registerTool(
  "pid",
  { description: "The server's process id", inputSchema: {} },
  async () => text(String(process.pid)),
);
server.registerTool(
  "sleep",
  { description: "Answers after ms milliseconds", inputSchema: { ms: z.number() } },
  async ({ ms }, extra) => {
    extra.signal.addEventListener("abort", () => {
      cancelled += 1;
    });
    await new Promise((resolve) => setTimeout(resolve, ms));
    return text(`slept ${ms}`);
  },
);
server.registerTool(
  "cancelled",
  { description: "How many sleeps the client cancelled", inputSchema: {} },
  async () => text(String(cancelled)),
);
server.registerTool(
  "big",
  { description: "Answers a text of the given size", inputSchema: { bytes: z.number() } },
  async ({ bytes }) => text("x".repeat(bytes)),
);
server.registerTool(
  "crash",
  {
    description: "Exits the process without answering",
    inputSchema: { poison: z.boolean().optional() },
  },
  async ({ poison }) => {
    if (poison && marker) writeFileSync(marker, "poisoned");
    process.stderr.write(`crashing on purpose; secret is ${process.env.TEST_SECRET ?? ""}\n`);
    process.exit(3);
  },
);

process.stderr.write(`amesh-test-stdio up (pid ${process.pid})\n`);
await server.connect(new StdioServerTransport());
