"""The few pages the plugin serves itself (no template engine needed)."""

SIGNED_OUT_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Signed out</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem}
a.button{display:inline-block;padding:.6rem 1.2rem;background:#0b5cad;color:#fff;
text-decoration:none;border-radius:4px}</style></head>
<body data-oidc-idle-clear="{keys}">
<main role="main"><h1 id="oidc-idle-signed-out">You are signed out</h1>
<p>For the protection of patient information, {why}.</p>
<p><a class="button" href="{login}">Sign in again</a></p></main>
<script src="{script}" data-signed-out="1"></script>
</body></html>
"""

UNAVAILABLE_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Session cannot be verified</title></head>
<body><main role="main"><h1>Your session cannot be verified right now</h1>
<p>{why}. For the protection of patient information nothing is shown until it can be.
Try again in a moment.</p></main></body></html>
"""
