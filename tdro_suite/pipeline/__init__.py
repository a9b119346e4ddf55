"""The whole journey in one command: reference → tDRO → fine-tune → index → evaluate → serve command."""
