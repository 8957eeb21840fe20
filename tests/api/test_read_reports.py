"""Reports: the catalog, and files served only from inside the reports directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.routes.reports import report_file
from core.settings import get_settings
from reports import catalog

API = "/api/v1/reports"
PAGE = "<!doctype html><title>{0}</title><p>{0}</p>"


@pytest.fixture
def reports_dir(client) -> Path:
    """The app's reports directory (the db fixture points it into the test's tmp_path), with
    two reports, a file outside it, and symlinks into and out of it."""
    root = get_settings().reports_dir
    (root / "drift").mkdir(parents=True)
    (root / "fleet.html").write_text(PAGE.format("fleet"))
    (root / "drift" / "all_a_b.html").write_text(PAGE.format("drift all"))
    (root / "manifest-notes.txt").write_text("not a report")
    (root / ".hidden.html").write_text(PAGE.format("hidden"))
    (root.parent / "secret.html").write_text(PAGE.format("secret"))
    (root / "leak.html").symlink_to(root.parent / "secret.html")
    (root / "alias.html").symlink_to(root / "fleet.html")
    for name, path, when in (("fleet", "fleet.html", "2026-11-26T10:00:00+00:00"),
                             ("drift-evidently", "drift/all_a_b.html",
                              "2026-11-26T11:00:00+00:00"),
                             ("alerts", "alerts.html", "2026-11-26T12:00:00+00:00")):
        catalog.record(root, catalog.ReportEntry(
            name=name, title=f"{name} report", path=path, generated_at=when,
            range_start="2026-11-25T00:00:00+00:00", range_end="2026-11-26T00:00:00+00:00",
            run_id="cli:test", summary=f"{name} figures"))
    return root


def test_index_lists_reports_whose_files_exist_newest_first(client, reports_dir):
    body = client.get(API).json()
    assert body["next_cursor"] is None
    assert [(r["name"], r["url"]) for r in body["items"]] == [
        ("drift-evidently", f"{API}/drift/all_a_b.html"), ("fleet", f"{API}/fleet.html")]
    assert body["items"][1] == {
        "name": "fleet", "title": "fleet report", "url": f"{API}/fleet.html",
        "path": "fleet.html", "generated_at": "2026-11-26T10:00:00+00:00",
        "range_start": "2026-11-25T00:00:00+00:00", "range_end": "2026-11-26T00:00:00+00:00",
        "run_id": "cli:test", "summary": "fleet figures"}


def test_a_report_is_served_as_html_with_safe_headers(client, reports_dir):
    for url, text in ((f"{API}/fleet.html", "fleet"), (f"{API}/drift/all_a_b.html", "drift all"),
                      (f"{API}/alias.html", "fleet")):
        response = client.get(url)
        assert response.status_code == 200 and f"<p>{text}</p>" in response.text
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "connect-src 'none'" in response.headers["content-security-policy"]


@pytest.mark.parametrize("path", [
    "%2e%2e/secret.html",            # encoded ../
    "..%2fsecret.html",              # encoded separator
    "%2E%2E%2Fsecret.html",
    "drift/%2e%2e/%2e%2e/secret.html",
    "leak.html",                     # a symlink pointing outside
    "missing.html",
    "drift",                         # a directory
    "manifest-notes.txt",            # not HTML
    "manifest.json",
    ".hidden.html",
    "fleet.html%00.txt",
    "fleet.html\\..\\secret.html",
])
def test_paths_leading_elsewhere_are_refused(client, reports_dir, path):
    response = client.get(f"{API}/{path}")
    assert response.status_code == 404, path
    assert "secret" not in response.text


def test_absolute_paths_are_refused(client, reports_dir):
    secret = reports_dir.parent / "secret.html"
    for url in (f"{API}/{secret}", f"{API}/%2F{str(secret).lstrip('/')}", f"{API}//etc/passwd"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert "secret" not in response.text and "root:" not in response.text


def test_report_file_resolves_only_inside_the_directory(reports_dir):
    assert report_file(reports_dir, "fleet.html") == reports_dir / "fleet.html"
    assert report_file(reports_dir, "alias.html") == (reports_dir / "fleet.html").resolve()
    for name in ("../secret.html", "drift/../../secret.html", str(reports_dir / "fleet.html"),
                 "leak.html", "", "fleet.html\x00", "a/" * 5000 + "x.html", "drift"):
        assert report_file(reports_dir, name) is None, name


def test_reports_directory_that_does_not_exist_yet(client):
    assert client.get(API).json() == {"items": [], "next_cursor": None}
    assert client.get(f"{API}/index.html").status_code == 404
