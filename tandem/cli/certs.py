"""`tandem certs`: a development certificate authority and node certificates."""

from __future__ import annotations

from pathlib import Path

import typer

from tandem.cli.common import app
from tandem.console import console
from tandem.errors import InputError


@app.command()
def certs(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for ca.pem, ca.key and NODE.pem/NODE.key."),
    nodes: list[str] = typer.Argument(..., help="Node names (each certificate's CN), e.g. bank market."),
):
    """Create a development certificate authority (unless OUT has one) and a certificate per node."""
    from tandem.crypto.tls import make_ca, make_node_cert

    try:
        if not (out / "ca.pem").exists():
            make_ca(out)
        for node in nodes:
            make_node_cert(out, node, out / "ca.pem", out / "ca.key")
    except OSError as exc:
        raise InputError(f"{out}: cannot write certificates ({exc.strerror})") from None
    console.print(f"certificates for {', '.join(nodes)} in {out} (CA: {out / 'ca.pem'})")
