"""API keys: stored hashed, verified in constant time, revocable; and the ``botkit keys`` CLI."""

from __future__ import annotations

import json
import sqlite3

from typer.testing import CliRunner

from botkit.cli import app as cli
from botkit.keys import ApiKeys, hash_key


async def test_create_verify_list_revoke(tmp_path) -> None:
    keys = ApiKeys.from_url(f"sqlite:///{tmp_path / 'bot.db'}")
    try:
        await keys.migrate()
        key, secret = await keys.create(name="ci")
        assert secret.startswith(f"bk_{key.id}_") and len(secret) > 50
        assert (await keys.verify(secret)) == key
        assert await keys.verify(secret + "x") is None
        assert await keys.verify(secret[:-2]) is None
        assert await keys.verify("bk_000000000000_" + "a" * 43) is None
        assert await keys.verify(None) is None
        other, _ = await keys.create(name="other")
        assert [k.id for k in await keys.list()] == [key.id, other.id]
        assert await keys.revoke(key.id)
        assert not await keys.revoke(key.id)  # already revoked
        assert await keys.verify(secret) is None
        assert [k.id for k in await keys.list(include_revoked=False)] == [other.id]
    finally:
        await keys.aclose()
    rows = sqlite3.connect(tmp_path / "bot.db").execute("SELECT secret_hash FROM api_keys").fetchall()
    assert (hash_key(secret),) in rows  # only the hash is stored
    assert all(secret not in str(row) for row in rows)


def test_keys_cli(tmp_path) -> None:
    (tmp_path / "bot.yaml").write_text("name: keytest\n", encoding="utf-8")
    runner = CliRunner()
    created = runner.invoke(cli, ["keys", "create", "--bot", str(tmp_path), "--name", "ops", "--json"])
    assert created.exit_code == 0, created.output
    data = json.loads(created.stdout)
    assert data["name"] == "ops" and data["key"].startswith("bk_")
    listed = runner.invoke(cli, ["keys", "list", "--bot", str(tmp_path), "--json"])
    assert listed.exit_code == 0, listed.output
    entries = json.loads(listed.stdout)
    assert [e["id"] for e in entries] == [data["id"]] and "key" not in entries[0]
    assert data["key"] not in listed.stdout
    table = runner.invoke(cli, ["keys", "list", "--bot", str(tmp_path)])
    assert data["id"] in table.stdout
    revoked = runner.invoke(cli, ["keys", "revoke", data["id"], "--bot", str(tmp_path)])
    assert revoked.exit_code == 0, revoked.output
    again = runner.invoke(cli, ["keys", "revoke", data["id"], "--bot", str(tmp_path)])
    assert again.exit_code == 2
