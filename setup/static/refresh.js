// The setup page refreshes its content in place while it is open: every
// few seconds it fetches the page again and swaps #content when it changed,
// so states stay true without a full reload's flicker. A hidden tab does
// not fetch; a failed fetch shows #stale until the next success.
(function () {
  "use strict";
  var content = document.getElementById("content");
  if (!content || !window.fetch || !window.DOMParser) {
    return;
  }
  var seconds = Number(content.getAttribute("data-refresh-seconds")) || 5;
  function setStale(stale) {
    var note = document.getElementById("stale");
    if (note) {
      note.hidden = !stale;
    }
  }
  function refresh() {
    if (document.hidden) {
      return;
    }
    fetch(window.location.pathname, { credentials: "same-origin", cache: "no-store" })
      .then(function (resp) {
        if (!resp.ok) {
          throw new Error("HTTP " + resp.status);
        }
        return resp.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("content");
        if (fresh && fresh.innerHTML !== content.innerHTML) {
          content.innerHTML = fresh.innerHTML;
        }
        setStale(false);
      })
      .catch(function () {
        setStale(true);
      });
  }
  window.setInterval(refresh, seconds * 1000);
  document.addEventListener("visibilitychange", refresh);
})();
