"""`tandem certs`: each organisation's own CA and node certificates, and the partner CAs it trusts.

Between two organisations only CA certificates travel: each runs ``init`` at home, ``export``s its CA
certificate, sends it to the partner (and reads the fingerprint to them over the phone), and
``trust``s the partner's. ``dev`` keeps the older single development CA for every node.
"""

from __future__ import annotations

from pathlib import Path

import typer

from tandem.cli.common import app
from tandem.console import console
from tandem.errors import InputError

certs_app = typer.Typer(
    help="Certificates: your organisation's CA and node certificates, and the partner CAs you trust.",
    no_args_is_help=True,
)
app.add_typer(certs_app, name="certs")

FolderOption = typer.Option(
    ..., "--out", "-o", help="Your organisation's certificate folder (ca.pem, NODE.pem, peers/)."
)
DaysOption = typer.Option(365, "--days", min=1, help="Days the certificates are valid.")
HostsOption = typer.Option(
    [], "--host", help="A DNS name or IP address partners reach the node by (repeat); 127.0.0.1 is always in."
)


@certs_app.command("init")
def init(
    org: str = typer.Option(..., "--org", help="Your organisation's name (the CA's subject)."),
    out: Path = FolderOption,
    node: str = typer.Option(None, "--node", help="The node's name, as partners call it. Default: --org, lowercased."),
    days: int = DaysOption,
    hosts: list[str] = HostsOption,
):
    """Make your organisation's CA and your node's certificate in OUT (keys never leave it)."""
    from tandem.crypto import pki, tls

    name = node or org.lower()
    ca = pki.init(out, org, name, days, tuple(hosts))
    console.print(f"CA of {org} in {ca} (fingerprint {tls.fingerprint(tls.load_certificate(ca))})")
    console.print(f"certificate of node {name} in {out / (name + '.pem')}; next: tandem certs export --out {out}")


@certs_app.command("node")
def node_cert(
    node: str = typer.Argument(..., help="The node's name, as partners call it."),
    out: Path = FolderOption,
    days: int = DaysOption,
    hosts: list[str] = HostsOption,
):
    """Issue (or renew) a node certificate from the CA in OUT; a running node picks it up for new connections."""
    from tandem.crypto import pki, tls

    path = pki.issue_node(out, node, days, tuple(hosts))
    cert = tls.load_certificate(path)
    console.print(f"certificate of node {node} in {path}, valid until {cert.not_valid_after_utc:%Y-%m-%d}")


@certs_app.command("export")
def export(
    out: Path = FolderOption,
    to: Path = typer.Option(..., "--to", help="Where to write your CA certificate for the partner (PEM)."),
):
    """Write your CA certificate (never its key) for a partner, and print its fingerprint to read to them."""
    from tandem.crypto import pki

    fp = pki.export(out, to)
    console.print(f"CA certificate in {to}: send it to your partner and read them its fingerprint: {fp}")


@certs_app.command("trust")
def trust(
    ca_file: Path = typer.Argument(..., help="The CA certificate the partner exported (PEM)."),
    peer: str = typer.Option(..., "--peer", help="The partner's node name (its [peers.NAME] in your node config)."),
    out: Path = FolderOption,
    add: bool = typer.Option(
        False, "--add", help="Keep trusting the CA already there too, while the partner rolls its CA over."
    ),
):
    """Trust a partner's CA for its node PEER; check the printed fingerprint with the partner before you use it."""
    from tandem.crypto import pki

    kept, fp = pki.trust(out, peer, ca_file, add)
    console.print(f"trusting {fp} for {peer}, kept in {kept}; your node config needs:")
    console.print(f'[peers.{peer}]\naddress = "HOST:PORT"\nca = "{kept}"', markup=False, highlight=False)


@certs_app.command("show")
def show(files: list[Path] = typer.Argument(..., help="Certificate files (PEM).")):
    """Subject, issuer, expiry and fingerprint of every certificate in the files (e.g. to read a
    fingerprint to a partner)."""
    from rich.table import Table

    from tandem.crypto import tls

    for path in files:
        try:
            found = tls.load_certificates(path)
        except tls.CertificateError as exc:
            raise InputError(str(exc)) from None
        for cert in found:
            left = tls.days_left(cert)
            grid = Table.grid(padding=(0, 2))
            grid.add_row("file", str(path))
            grid.add_row("subject", tls.subject(cert))
            grid.add_row("issuer", cert.issuer.rfc4514_string())
            grid.add_row("CA", "yes" if tls.is_ca(cert) else "no")
            grid.add_row(
                "expires", f"{cert.not_valid_after_utc:%Y-%m-%d} ({left:.0f} days)" if left >= 0 else "expired"
            )
            grid.add_row("fingerprint", tls.fingerprint(cert))
            console.print(grid, "")


@certs_app.command("dev")
def dev(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for ca.pem, ca.key and NODE.pem/NODE.key."),
    nodes: list[str] = typer.Argument(..., help="Node names (each certificate's CN), e.g. bank market."),
):
    """One development CA for every node, on one machine (tests only: in a deployment each organisation runs init)."""
    from tandem.crypto.tls import make_ca, make_node_cert

    try:
        if not (out / "ca.pem").exists():
            make_ca(out)
        for name in nodes:
            make_node_cert(out, name, out / "ca.pem", out / "ca.key")
    except OSError as exc:
        raise InputError(f"{out}: cannot write certificates ({exc.strerror})") from None
    console.print(f"certificates for {', '.join(nodes)} in {out} (CA: {out / 'ca.pem'})")
