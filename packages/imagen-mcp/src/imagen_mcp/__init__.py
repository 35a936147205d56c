"""imagen's MCP server: every configured backend as tools for AI agents.

``imagen mcp`` serves the tools over stdio (what desktop clients launch) or streamable
HTTP; :func:`imagen_mcp.server.build_server` builds the same server for embedding.
Importing this package is cheap: the MCP SDK loads only when a server is built.
"""

__version__ = "0.1.0"
