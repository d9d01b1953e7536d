"""An HTTP client that behaves like a browser where the tests need it to.

Keycloak marks its cookies ``Secure; SameSite=None``. Browsers treat
``http://127.0.0.1`` as a secure context and send such cookies; Python's
cookie jar does not. This client follows redirects one hop at a time and
un-marks ``Secure`` on loopback cookies between hops, which is what a browser
on this machine would do. It also fills Keycloak's real login form.
"""

from __future__ import annotations

import html
import re
from urllib.parse import urljoin

import requests

LOOPBACK = ("127.0.0.1", "localhost")


class Browser(requests.Session):
    def _unsecure(self) -> None:
        for c in self.cookies:
            if c.domain.lstrip(".") in LOOPBACK:
                c.secure = False

    def go(self, method: str, url: str, **kwargs: object) -> requests.Response:
        """One request, then redirects followed hop by hop (at most 15)."""
        self._unsecure()
        resp = self.request(method, url, allow_redirects=False, **kwargs)  # type: ignore[arg-type]
        for _ in range(15):
            self._unsecure()
            if resp.status_code not in (301, 302, 303, 307, 308):
                return resp
            url = urljoin(resp.url, resp.headers["Location"])
            resp = self.request("GET", url, allow_redirects=False)
        raise AssertionError(f"too many redirects, last {url}")

    def login_form(self, resp: requests.Response, username: str,
                   password: str) -> requests.Response:
        """Fill and submit Keycloak's real login form found in ``resp``."""
        m = re.search(r'<form[^>]*id="kc-form-login"[^>]*action="([^"]+)"', resp.text)
        assert m, f"no Keycloak login form at {resp.url}"
        return self.go("POST", html.unescape(m.group(1)),
                       data={"username": username, "password": password, "credentialId": ""})

    @staticmethod
    def is_login_page(resp: requests.Response) -> bool:
        return 'id="kc-form-login"' in resp.text
