#!/usr/bin/env python3
"""Drives the sandbox page in Debian's headless chromium, as a person would: pick fixture 02,
submit it, press Agree on every open task until the instance completes, then find APPROVED among
what Dataphin received. Talks the DevTools protocol over --remote-debugging-pipe (stdlib only).

usage: drive_sandbox.py SANDBOX_URL SCREENSHOT.png
Prints one JSON line with what the page showed; exits non-zero with the reason on failure.
"""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

TIMEOUT = 60


class Browser:
    def __init__(self, binary):
        self.profile = tempfile.mkdtemp(prefix="sandbox-chromium-")
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()

        def wire():
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--disable-dev-shm-usage", "--remote-debugging-pipe",
             "--window-size=1500,1000", f"--user-data-dir={self.profile}", "about:blank"],
            pass_fds=(3, 4), preexec_fn=wire,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.out = os.fdopen(to_chrome_w, "wb", buffering=0)
        self.inp = os.fdopen(from_chrome_r, "rb", buffering=0)
        self.buf = b""
        self.next_id = 0
        self.session = None

    def send(self, method, params=None, session=True):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        self.out.write(json.dumps(msg).encode() + b"\0")
        want = self.next_id
        while True:
            while b"\0" not in self.buf:
                chunk = self.inp.read(65536)
                if not chunk:
                    raise RuntimeError("chromium closed the pipe")
                self.buf += chunk
            raw, self.buf = self.buf.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == want:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def open(self, url):
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)
        attached = self.send("Target.attachToTarget",
                             {"targetId": target["targetId"], "flatten": True}, session=False)
        self.session = attached["sessionId"]
        self.send("Page.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": 1500, "height": 1000, "deviceScaleFactor": 1, "mobile": False})
        self.send("Page.navigate", {"url": url})

    def js(self, expression):
        result = self.send("Runtime.evaluate",
                           {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait(self, expression, what):
        deadline = time.time() + TIMEOUT
        while time.time() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.2)
        page = self.js("(async () => { try { const r = await api('GET', '/api/instances');"
                       " renderInstances(r.data.instances || []); return 'render ok: ' +"
                       " document.querySelector('#instances').innerText.slice(0, 1500); }"
                       " catch (e) { return 'render failed: ' + e; } })()")
        raise RuntimeError(f"timed out waiting for {what}; the page shows:\n{page}")

    def screenshot(self, path):
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        try:
            self.send("Browser.close", session=False)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


def main():
    url, shot = sys.argv[1], sys.argv[2]
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if not binary:
        sys.exit("chromium is not installed (infra/scripts/test.sh installs it: apt-get install -y chromium)")
    b = Browser(binary)
    try:
        b.open(url)
        b.wait("document.querySelectorAll('#scenario option').length > 0", "the scenarios")
        b.js("""(() => { const s = document.querySelector('#scenario');
                 s.value = [...s.options].find(o => o.text.startsWith('02_')).value;
                 s.dispatchEvent(new Event('change')); })()""")
        b.js("document.querySelector('#submit').click()")
        ticket = b.wait("(document.querySelector('#reply a[data-ticket]') || {}).textContent",
                        "the bridge's reply with a ticket")
        card = f"document.querySelector('.instance a[data-ticket=\"{ticket}\"]')?.closest('.instance')"
        b.wait(f"!!({card})", "the instance of the ticket")
        approvers = []
        deadline = time.time() + TIMEOUT
        while b.js(f"{card}.dataset.status") == "RUNNING":
            if time.time() > deadline:
                raise RuntimeError("the instance did not complete")
            who = b.js(f"""(() => {{ const btn = {card}.querySelector('button[data-act=agree]');
                if (!btn || btn.disabled) return null;
                const user = btn.closest('tr.task').dataset.user;
                const remark = btn.parentElement.querySelector('input[id^=remark]');
                remark.value = 'approved in the browser';
                btn.click(); return user; }})()""")
            if who:
                approvers.append(who)
            time.sleep(0.8)
        result = b.wait(f"""(() => {{ const c = document.querySelector('.callback[data-ticket="{ticket}"][data-status=APPROVED]');
                return c && c.querySelector('.badge').textContent; }})()""", "APPROVED at Dataphin")
        # Drop a card rendered by an earlier refresh, so the status read is the fresh one.
        b.js("document.querySelector('#ticket-card')?.remove()")
        b.js(f"document.querySelector('a[data-ticket=\"{ticket}\"]').click()")
        ticket_status = b.wait("document.querySelector('#ticket-card')?.dataset.status", "the ticket")
        time.sleep(0.5)
        b.screenshot(shot)
        print(json.dumps({"ticket": ticket, "approvers": approvers, "callback": result,
                          "instance": b.js(f"{card}.dataset.status"), "ticket_status": ticket_status}))
    finally:
        b.close()


if __name__ == "__main__":
    main()
