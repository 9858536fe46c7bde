"""The dashboard's two static files, kept in Python so they ship with the package as they
are (no package-data globs): its stylesheet and the login page's script. No other script is
served; the CSP allows only these (``'self'``), never inline code."""

STYLE_CSS = """\
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #1d2330; background: #f6f7f9; }
header { background: #1d2330; color: #fff; padding: 10px 20px; display: flex; gap: 16px;
         align-items: baseline; }
header .brand { font-weight: 700; }
header .name { color: #9fb0c8; }
header nav { margin-left: auto; display: flex; gap: 14px; }
header nav a { color: #cfd8e6; text-decoration: none; }
header nav a.on { color: #fff; border-bottom: 2px solid #6c8ebf; }
main { padding: 10px 24px 40px; max-width: 1200px; }
main.login { max-width: 420px; margin: 60px auto; background: #fff; padding: 24px;
             border-radius: 6px; box-shadow: 0 1px 4px #0002; }
main.login input { width: 100%; box-sizing: border-box; padding: 6px; margin: 8px 0; }
section { background: #fff; border-radius: 6px; padding: 8px 16px 14px; margin: 14px 0;
          box-shadow: 0 1px 3px #0001; }
h1 { font-size: 22px; } h2 { font-size: 17px; } h4 { margin: 10px 0 4px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e3e6eb;
         vertical-align: top; }
th { font-weight: 600; color: #55607a; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 3px 16px; }
dt { color: #55607a; } dd { margin: 0; overflow-wrap: anywhere; }
code { font: 12px ui-monospace, monospace; overflow-wrap: anywhere; }
pre { background: #10141c; color: #d7e0ee; padding: 8px; border-radius: 4px;
      max-height: 320px; overflow: auto; white-space: pre-wrap; overflow-wrap: anywhere; }
.badge { display: inline-block; padding: 0 7px; border-radius: 9px; background: #dfe4ec;
         font-size: 12px; }
.b-paid, .b-pass, .b-success, .b-up, .b-verified, .b-can { background: #cdebd3; color: #1e5b2a; }
.b-fail, .b-rejected, .b-failed, .b-down, .b-error, .b-invalid {
  background: #f6d2d0; color: #7a1d17; }
.b-refused, .b-expired, .b-undecided, .b-unpaid, .b-timeout { background: #f7e6c4; color: #6b4a06; }
.error { color: #a32018; } .ok { color: #1e5b2a; } .empty, .note { color: #6b7488; }
.result { border-top: 1px solid #e3e6eb; padding-top: 8px; }
.balance { font-size: 22px; }
.title { overflow-wrap: anywhere; }
.live { font-size: 11px; color: #1e5b2a; background: #cdebd3; padding: 0 6px;
        border-radius: 8px; vertical-align: middle; }
pre.diff .add { color: #8fe39a; } pre.diff .del { color: #ff9b93; }
pre.diff .hunk { color: #8ab4f8; } pre.diff .meta { color: #c9a0ff; }
pre.text { background: #f1f3f6; color: #1d2330; }
.plot text { fill: #1d2330; font-family: system-ui, sans-serif; }
"""

LOGIN_JS = """\
// The login URL carries the token in its fragment, which browsers never send: move it into
// the form, drop it from the address bar and history, and log in (also when the URL is
// opened over an already open login page, which only changes the fragment).
(function () {
  function fromHash() {
    var m = /(?:^#|&)token=([^&]+)/.exec(window.location.hash);
    if (!m) return;
    history.replaceState(null, "", window.location.pathname);
    document.getElementById("token").value = decodeURIComponent(m[1]);
    document.getElementById("login").submit();
  }
  window.addEventListener("hashchange", fromHash);
  fromHash();
})();
"""

LIVE_JS = """\
// Live values without reloads: where a page has elements marked data-live, follow the
// dashboard's server-sent events and put each value in as text (never as markup).
(function () {
  var marked = document.querySelectorAll("[data-live]");
  if (!marked.length || !window.EventSource) return;
  var source = new EventSource("/live");
  source.onmessage = function (msg) {
    var values;
    try { values = JSON.parse(msg.data); } catch (e) { return; }
    marked.forEach(function (el) {
      var key = el.getAttribute("data-live");
      if (Object.prototype.hasOwnProperty.call(values, key)) {
        el.textContent = String(values[key]);
      }
    });
  };
})();
"""
