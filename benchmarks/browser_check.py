"""A real-browser smoke test of the course in JupyterLab (maintainers: `make browser-check`).

Starts JupyterLab at the repository root, as `make lab` does, and drives the distribution's
Chromium (`apt install chromium`; Playwright downloads nothing) headless with the `playwright`
package:

1. notebook 00: run all cells; no cell may end in an error;
2. exercise 01 (untouched): run all cells; every exercise fails with the NotImplementedError
   message of the stub, and no empty figure is drawn under it;
3. notebook 09: run all cells, move the guidance explorer's slider and check that it redraws.

Screenshots go to outputs/browser-check/; a table (and `--json FILE`) reports each step's wall
time and result. Exit status 1 when a step fails. Not part of `make test`: CI has no browser.
Run it with MINILDM_FAST=1 (the Makefile does) so each notebook takes seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
ERROR_OUTPUT = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
PANEL = ".jp-NotebookPanel:visible"  # the notebook in the active tab


def find_chromium(given: str | None) -> str:
    """The Chromium executable: `given`, else the first of CHROMIUM_NAMES on PATH."""
    found = given or next((shutil.which(name) for name in CHROMIUM_NAMES if shutil.which(name)), None)
    if not found or not Path(found).exists():
        raise SystemExit(f"browser_check: no Chromium found (looked for {', '.join(CHROMIUM_NAMES)} on PATH); "
                         "install the distribution's package (apt install chromium) or pass --chromium PATH")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_lab(port: int, token: str, log: Path) -> subprocess.Popen:
    """JupyterLab rooted at the repository (the `make lab` command, without opening a browser).

    Autosave is off and settings and workspaces live beside the log, so the check never
    rewrites a committed notebook or the maintainer's own JupyterLab setup.
    """
    settings = log.parent / "lab-settings"
    autosave = settings / "@jupyterlab" / "docmanager-extension" / "plugin.jupyterlab-settings"
    autosave.parent.mkdir(parents=True, exist_ok=True)
    autosave.write_text(json.dumps({"autosave": False}))
    command = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={ROOT}", "--no-browser",
               f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={log.parent / 'workspaces'}",
               f"--ServerApp.port={port}", f"--IdentityProvider.token={token}", "--ServerApp.ip=127.0.0.1",
               *(["--allow-root"] if os.geteuid() == 0 else [])]
    server = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env={**os.environ})
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2)
            return server
        except OSError:
            time.sleep(1)
    server.terminate()
    raise SystemExit(f"browser_check: JupyterLab did not start within 120 s; see {log}")


IDLE = ("() => { const text = document.body.innerText;"
        " return text.includes('| Idle') && !text.includes('[*]'); }")


def wait_idle(page, timeout_s: float) -> None:
    """Wait until the kernel is idle and no cell is queued or running."""
    page.wait_for_timeout(500)
    page.wait_for_function(IDLE, timeout=timeout_s * 1000)


def run_all(page, timeout_s: float) -> None:
    """Run > Run All Cells (stops at the first error, as in JupyterLab), then wait until idle."""
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_text("Run All Cells", exact=True).click()
    wait_idle(page, timeout_s)


def run_cell_by_cell(page, timeout_s: float) -> None:
    """Shift+Enter through every cell, errors or not, as a student working through an exercise does."""
    page.locator(PANEL).locator(".jp-Cell").first.click()
    page.keyboard.press("Escape")
    for _ in range(page.locator(PANEL).locator(".jp-Cell").count()):
        page.keyboard.press("Shift+Enter")
        wait_idle(page, timeout_s)


def open_notebook(page, base: str, path: str, token: str) -> None:
    """Open `path`, accept the kernel dialog if JupyterLab asks, and wait for an idle kernel."""
    page.goto(f"{base}/lab/tree/{path}?reset&token={token}")  # reset: only this notebook open
    page.locator(PANEL).locator(".jp-Cell").first.wait_for(timeout=60_000)
    select = page.locator(".jp-Dialog").get_by_role("button", name="Select", exact=True)
    try:
        select.wait_for(timeout=5_000)
        select.click()
    except Exception:  # no dialog: the kernel started by itself
        pass
    wait_idle(page, 120)


def check(page, base: str, token: str, out: Path, timeout_s: float) -> list[dict]:
    rows = []

    def step(name: str, action) -> None:
        start = time.time()
        try:
            detail = action()
            ok = True
        except Exception as error:  # a failed step is reported, the others still run
            detail, ok = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}", False
        page.screenshot(path=str(out / f"{name}.png"), full_page=False)
        rows.append({"step": name, "ok": ok, "seconds": round(time.time() - start, 1), "detail": detail})

    def notebook_00():
        open_notebook(page, base, "notebooks/00_setup_and_tour.ipynb", token)
        run_all(page, timeout_s)
        errors = page.locator(PANEL).locator(ERROR_OUTPUT).filter(has_text="Traceback").count()
        if errors:
            raise AssertionError(f"{errors} cell(s) ended in an error")
        return f"{page.locator(PANEL).locator('.jp-CodeCell').count()} code cells ran without errors"

    def exercise_01():
        open_notebook(page, base, "exercises/01_autoencoders_and_vae.ipynb", token)
        run_cell_by_cell(page, timeout_s)
        stubs = page.locator(PANEL).locator(ERROR_OUTPUT).filter(has_text="replace this line with your code").count()
        if stubs == 0:
            raise AssertionError("no cell shows the stub's NotImplementedError message")
        last = page.locator(PANEL).locator(".jp-CodeCell").last
        if last.locator(".jp-OutputArea-output img").count():
            raise AssertionError("the last cell drew a figure although the exercise functions are missing")
        return f"{stubs} cells show the stub's message; no figure under the failing plot cell"

    def notebook_09_widget():
        open_notebook(page, base, "notebooks/09_class_conditioning_and_guidance.ipynb", token)
        run_all(page, timeout_s)
        slider = page.locator(PANEL).locator(".widget-slider .noUi-handle, .widget-slider .ui-slider-handle").first
        slider.scroll_into_view_if_needed()
        image = page.locator(PANEL).locator(".widget-output img").first
        before = image.get_attribute("src") or ""
        start = time.time()
        slider.focus()
        page.keyboard.press("ArrowRight")
        page.wait_for_function("([sel, old]) => { const im = document.querySelector(sel);"
                               " return im && (im.getAttribute('src') || '') !== old; }",
                               arg=[".widget-output img", before], timeout=60_000)
        return f"the explorer redrew {time.time() - start:.1f} s after the slider moved"

    step("notebook_00", notebook_00)
    step("exercise_01", exercise_01)
    step("notebook_09_widget", notebook_09_widget)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", metavar="PATH", help="the Chromium executable (default: found on PATH)")
    parser.add_argument("--out", default=str(ROOT / "outputs" / "browser-check"), help="screenshot folder")
    parser.add_argument("--timeout", type=float, default=300, help="seconds allowed per notebook run")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise SystemExit("browser_check: the playwright package is missing: pip install playwright "
                         "(the browser itself comes from the distribution, not from `playwright install`)")
    chromium = find_chromium(args.chromium)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    port, token = free_port(), "minildm-browser-check"
    server = start_lab(port, token, out / "jupyterlab.log")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, headless=True,
                                                 args=["--no-sandbox"] if os.geteuid() == 0 else [])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            rows = check(page, f"http://127.0.0.1:{port}", token, out, args.timeout)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"{'step':<20} {'ok':<4} {'seconds':>8}  detail")
    for row in rows:
        print(f"{row['step']:<20} {'yes' if row['ok'] else 'NO':<4} {row['seconds']:>8}  {row['detail']}")
    print(f"screenshots in {out}")
    if args.json:
        Path(args.json).write_text(json.dumps({"chromium": chromium, "rows": rows}, indent=2) + "\n")
    return 0 if all(row["ok"] for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
