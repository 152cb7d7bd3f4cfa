"""The self-contained HTML report: sections, exact numbers, offline, rebuilt from a file, rendered.

One real (small) fit per module; fake posteriors (``test_plotting.fake_fit``) for the
structural cases that need a family dim, a MAP preview or downstream rows.  The browser
test drives Debian's ``chromium`` through the DevTools protocol over a pipe (stdlib only)
and is skipped when no ``chromium`` binary is on PATH.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
import warnings
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from conftest import shape_default
from markupsafe import escape
from test_plotting import fake_fit

import bayescale
from bayescale.report import SECTIONS, default_targets, write_report

#: The targets of ``bayescale demo`` (a "demo-like" report).
TARGETS = pd.DataFrame({"params": [1.4e9, 7e9, 7e10], "tokens": [2.8e10, 1.4e11, 1.4e12]})
ALL_HEADINGS = [title for _, title in SECTIONS]
MAX_BYTES = 5 * 2**20
MAX_RENDER_SECONDS = 5.0


# ----------------------------------------------------------------------------- parsing
class ReportParser(HTMLParser):
    """Collects headings, resource URLs and the prediction table of a report."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.h2: list[tuple[str | None, str]] = []
        self.resources: list[tuple[str, str, str]] = []  # (tag, attribute, url)
        self.tags: list[str] = []
        self.images: list[str] = []
        self.figures: list[str] = []
        self.prediction_columns: list[str] = []
        self.prediction_rows: list[dict[str, tuple[str, str]]] = []
        self._h2: tuple[str | None, list[str]] | None = None
        self._in_predictions = False
        self._cell: tuple[str, str, list[str]] | None = None
        self._header: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        for key in ("src", "href", "data", "poster", "srcset", "action"):
            if attrs.get(key):
                self.resources.append((tag, key, attrs[key]))
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag == "figure":
            self.figures.append(attrs.get("data-figure", ""))
        if tag == "h2":
            self._h2 = (attrs.get("id"), [])
        if tag == "table" and "predictions" in (attrs.get("class") or "").split():
            self._in_predictions = True
        if self._in_predictions and tag == "tr":
            self.prediction_rows.append({})
        if self._in_predictions and tag == "th":
            self._header = []
        if self._in_predictions and tag == "td":
            self._cell = (attrs["data-column"], attrs["data-value"], [])

    def handle_endtag(self, tag):
        if tag == "h2" and self._h2 is not None:
            self.h2.append((self._h2[0], "".join(self._h2[1]).strip()))
            self._h2 = None
        if tag == "table":
            self._in_predictions = False
        if tag == "th" and self._header is not None:
            self.prediction_columns.append("".join(self._header).strip())
            self._header = None
        if tag == "td" and self._cell is not None:
            column, value, text = self._cell
            self.prediction_rows[-1][column] = (value, "".join(text).strip())
            self._cell = None

    def handle_data(self, data):
        if self._h2 is not None:
            self._h2[1].append(data)
        if self._header is not None:
            self._header.append(data)
        if self._cell is not None:
            self._cell[2].append(data)

    @property
    def predictions(self) -> list[dict[str, tuple[str, str]]]:
        return [row for row in self.prediction_rows if row]


def parse(path: Path) -> ReportParser:
    parser = ReportParser()
    parser.feed(Path(path).read_text(encoding="utf-8"))
    return parser


def assert_offline(path: Path) -> None:
    """No external resource loads, no scripts, every image inlined."""
    text = Path(path).read_text(encoding="utf-8")
    parsed = parse(path)
    assert 'src="http' not in text and "src='http" not in text
    assert not re.search(r"<link[^>]+href=[\"']?https?:", text)
    assert not re.search(r"url\(\s*[\"']?(https?:|//)", text) and "@import" not in text
    assert "script" not in parsed.tags and "iframe" not in parsed.tags
    for tag, key, url in parsed.resources:
        if tag == "a" and key == "href":
            assert url.startswith("#"), f"a link leaves the page: {url}"
        else:
            assert url.startswith("data:"), f"<{tag} {key}> loads {url[:60]}"
    assert parsed.images and all(src.startswith("data:image/png;base64,") for src in parsed.images)
    assert "could not be drawn" not in text  # no figure failed


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.fixture(scope="module")
def fit():
    """A real 12-run fit (3 sizes x 4 token budgets), small draws."""
    runs, _ = bayescale.simulate_ladder(seed=2, sizes=(3e7, 1e8, 3e8),
                                        token_multipliers=(5, 10, 20, 40))
    assert runs["run"].nunique() == 12
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bayescale.fit(runs, shape_default(runs), draws=150, tune=150, chains=2,
                             random_seed=4, progressbar=False, retry=False)


@pytest.fixture(scope="module")
def report(fit, tmp_path_factory):
    """The demo-like report: the 12-run fit with the demo's three targets."""
    path = tmp_path_factory.mktemp("report") / "report.html"
    start = time.perf_counter()
    write_report(fit, path, targets=TARGETS,
                 title="bayescale demo: a simulated ladder with a known law")
    seconds = time.perf_counter() - start
    print(f"\n12-run report: {path.stat().st_size / 1e6:.2f} MB written in {seconds:.1f} s")
    return path


# ----------------------------------------------------------------------------- content
def test_report_has_every_section_in_order(report):
    parsed = parse(report)
    # a loss-only fit of a named model
    expected = [(sid, title) for sid, title in SECTIONS
                if sid not in ("downstream", "model_choice")]
    assert parsed.h2 == expected
    assert (len(parsed.figures) >= 8 and "band_vs_scale" in parsed.figures
            and "prior_posterior" in parsed.figures)


def test_report_loads_nothing_and_is_small(report):
    assert_offline(report)
    assert report.stat().st_size < MAX_BYTES


def test_prediction_table_is_exactly_fit_predict(fit, report):
    parsed = parse(report)
    assert parsed.prediction_columns == ["params", "tokens", "metric", "median", "lower", "upper"]
    predicted = fit.predict(TARGETS)
    rows = parsed.predictions
    assert len(rows) == len(predicted) == 3
    for row, (_, expected) in zip(rows, predicted.iterrows(), strict=True):
        for column in ("params", "tokens", "median", "lower", "upper"):
            value, _ = row[column]
            assert float(value) == expected[column], column  # exact, not approximate
        for column in ("median", "lower", "upper"):
            assert row[column][1] == f"{expected[column]:.6g}"
        assert row["metric"][1] == "loss"


def test_headline_states_verdict_and_far_extrapolation(fit, report):
    text = report.read_text(encoding="utf-8")
    assert str(escape(fit.diagnostics().message())) in text
    far = fit.predict(TARGETS)["extrapolation"] > 1000
    assert far.any()  # the demo's 70B target lies far beyond a ladder of 300M models
    warning = re.findall(r'class="callout warning"[^>]*>(.*?)</div>', text, flags=re.S)
    assert sum("beyond the ladder&#39;s largest compute" in w
               or "beyond the ladder's largest compute" in w
               for w in warning) == int(far.sum())


def test_default_target_and_no_uncertainty_section(fit, tmp_path):
    path = write_report(fit, tmp_path / "default.html", figures=False)
    parsed = parse(path)
    assert [t for _, t in parsed.h2] == [t for t in ALL_HEADINGS
                                         if t not in ("Downstream", "Uncertainty",
                                                      "Model choice")]
    (row,) = parsed.predictions
    expected = default_targets(fit)
    assert float(row["params"][0]) == expected.loc[0, "params"]
    assert float(row["tokens"][0]) == expected.loc[0, "tokens"]
    assert float(row["median"][0]) == fit.predict(expected)["median"].iloc[0]
    assert "No targets were given" in path.read_text(encoding="utf-8")


def test_report_from_a_saved_fit(fit, report, tmp_path):
    saved = tmp_path / "fit.nc"
    fit.save(saved)
    loaded = bayescale.load_fit(saved)
    from_file = write_report(str(saved), tmp_path / "from_file.html", targets=TARGETS,
                             title="bayescale demo: a simulated ladder with a known law")
    original, rebuilt = parse(report), parse(from_file)
    assert rebuilt.h2 == original.h2
    assert rebuilt.predictions == original.predictions  # same numbers after save and load
    assert float(rebuilt.predictions[0]["median"][0]) == loaded.predict(TARGETS)["median"].iloc[0]
    assert_offline(from_file)


def test_sections_are_left_out_when_the_fit_lacks_them(tmp_path, downstream_fit):
    preview = write_report(fake_fit(method="map"), tmp_path / "map.html", figures=False)
    headings = [t for _, t in parse(preview).h2]
    assert "Diagnostics" not in headings and "Downstream" not in headings
    text = preview.read_text(encoding="utf-8")
    assert "MAP preview" in text and 'class="badge preview"' in text

    downstream = write_report(downstream_fit[0], tmp_path / "acc.html", figures=False)
    headings = [t for _, t in parse(downstream).h2]
    assert "Downstream" in headings
    assert headings.index("Downstream") == headings.index("Diagnostics") + 1
    text = downstream.read_text(encoding="utf-8")
    verdicts = downstream_fit[0].task_report().set_index("task")["verdict"]
    assert verdicts["acc:flat"] != "improves"
    assert "<td>acc:flat</td>" in text and f"<td>{verdicts['acc:flat']}</td>" in text


def test_pooled_fit_report_shows_families(tmp_path):
    pooled = fake_fit(families=3, pooled=True)
    path = write_report(pooled, tmp_path / "pooled.html", figures=["forest", "ladder"])
    parsed = parse(path)
    assert parsed.figures == ["ladder", "forest"]
    assert parsed.prediction_columns[0] == "family"  # targets without a family: a new family
    text = path.read_text(encoding="utf-8")
    for family in ("family0", "family1", "family2"):
        assert f"E[{family}]" in text
    assert_offline(path)


# ----------------------------------------------------------------------------- browser
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


class Chromium:
    """A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe`` (stdlib only).

    Chromium reads NUL-terminated JSON commands on fd 3 and writes replies and events on
    fd 4; one page session is attached with ``flatten=True``.
    """

    def __init__(self, binary: str, user_data_dir: Path, width: int = 1280, height: int = 900):
        child_in, self._write_fd = os.pipe()
        self._read_fd, child_out = os.pipe()
        # moved to fds >= 10 so that placing them on 3 and 4 cannot clobber one another
        child_in, child_out = (self._above_four(fd) for fd in (child_in, child_out))
        args = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}",
                "--remote-debugging-pipe",
                f"--window-size={width},{height}", "about:blank"]
        # a tiny Python trampoline puts the pipe ends on fds 3 and 4, then becomes chromium
        trampoline = ("import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
                      "os.execv(sys.argv[3], sys.argv[3:])")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", trampoline, str(child_in), str(child_out), *args],
            pass_fds=(child_in, child_out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(child_in)
        os.close(child_out)
        self._writer = os.fdopen(self._write_fd, "wb", buffering=0)
        self._inbox: queue.Queue = queue.Queue()
        self.events: list[dict] = []
        self._id = 0
        self.session: str | None = None
        threading.Thread(target=self._read, daemon=True).start()

    @staticmethod
    def _above_four(fd: int) -> int:
        moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
        os.close(fd)
        return moved

    def _read(self) -> None:
        buffer = b""
        with os.fdopen(self._read_fd, "rb", buffering=0) as pipe:
            while chunk := pipe.read(1 << 16):
                buffer += chunk
                while b"\0" in buffer:
                    message, buffer = buffer.split(b"\0", 1)
                    self._inbox.put(json.loads(message))

    def send(self, method: str, params: dict | None = None, browser: bool = False,
             timeout: float = 30.0) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if self.session and not browser:
            message["sessionId"] = self.session
        self._writer.write(json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._inbox.get(timeout=max(deadline - time.monotonic(), 1e-3))
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def open_page(self) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, browser=True)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 browser=True)["sessionId"]
        for domain in ("Page", "Network", "Runtime", "Log"):
            self.send(f"{domain}.enable")

    def navigate(self, url: str, timeout: float = 30.0) -> float:
        """Load ``url``; seconds from the navigate command to the page's load event."""
        self.events.clear()
        start = time.perf_counter()
        self.send("Page.navigate", {"url": url})
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            self.events.append(self._inbox.get(timeout=max(deadline - time.monotonic(), 1e-3)))
        return time.perf_counter() - start

    def settle(self, seconds: float = 0.3) -> None:
        """Collect events that arrive shortly after the load event."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                self.events.append(self._inbox.get(timeout=left))
            except queue.Empty:
                break

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def requested_urls(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events
                if e.get("method") == "Network.requestWillBeSent"]

    def console_errors(self) -> list[str]:
        errors = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append(" ".join(str(a.get("value", a.get("description", "")))
                                       for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                errors.append(params["exceptionDetails"].get("text", "exception"))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                errors.append(params["entry"].get("text", ""))
        return errors

    def screenshot(self, path: Path) -> None:
        size = self.send("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        data = self.send("Page.captureScreenshot",
                         {"format": "png", "captureBeyondViewport": True, "clip": clip})["data"]
        Path(path).write_bytes(base64.b64decode(data))

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a browser that already went away
            self.send("Browser.close", browser=True, timeout=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    binary = shutil.which("chromium")
    if binary is None:
        pytest.skip("no `chromium` binary on PATH (apt-get install -y chromium)")
    client = Chromium(binary, tmp_path_factory.mktemp("chromium-profile"))
    try:
        client.open_page()
        yield client
    finally:
        client.close()


def test_the_browser_harness_catches_requests_and_errors(browser, tmp_path):
    """Negative control: a page that fetches and logs an error must be caught."""
    page = tmp_path / "bad.html"
    page.write_text('<html><body><h2 id="x">X</h2><img src="http://127.0.0.1:9/x.png">'
                    '<script>console.error("boom")</script></body></html>')
    browser.navigate(page.as_uri())
    browser.settle()
    assert any(url.startswith("http://127.0.0.1:9/") for url in browser.requested_urls())
    assert any("boom" in e for e in browser.console_errors())


def test_report_renders_offline_in_chromium(browser, report, tmp_path):
    seconds = browser.navigate(report.as_uri())
    browser.settle()
    assert browser.console_errors() == []
    urls = browser.requested_urls()
    assert urls and urls[0] == report.as_uri()
    assert all(u == report.as_uri() or u.startswith("data:") for u in urls), [u[:80] for u in urls]
    assert seconds < MAX_RENDER_SECONDS

    headings = browser.evaluate("[...document.querySelectorAll('h2')].map(h => [h.id, "
                                "h.textContent.trim()])")
    assert [tuple(h) for h in headings] == [(sid, t) for sid, t in SECTIONS
                                            if sid not in ("downstream", "model_choice")]
    columns = browser.evaluate("[...document.querySelectorAll('table.predictions thead th')].map(t "
                               "=> t.textContent.trim())")
    assert columns == ["params", "tokens", "metric", "median", "lower", "upper"]
    assert (browser.evaluate("document.querySelectorAll('table.predictions tbody tr').length")
            == len(TARGETS))
    images = browser.evaluate("[...document.images].map(i => [i.complete, i.naturalWidth])")
    assert images and all(done and width > 300 for done, width in images)  # every figure decoded
    width = browser.evaluate("document.documentElement.scrollWidth")
    assert width <= 1280  # nothing overflows the window sideways

    shot = Path(os.environ.get("BAYESCALE_REPORT_SCREENSHOT", tmp_path / "report.png"))
    browser.screenshot(shot)
    header = shot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    png_width, png_height = (int.from_bytes(header[16:20], "big"),
                             int.from_bytes(header[20:24], "big"))
    assert png_width >= 1000 and png_height > 3000  # the whole page, not just the first screen
    print(f"\nrendered in {seconds:.2f} s; screenshot {png_width}x{png_height} at {shot}")
