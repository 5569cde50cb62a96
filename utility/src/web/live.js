// The status page follows the utility without reloading: each server-sent
// `main` event carries the page's new <main>, swapped in place. Without
// EventSource, the page reloads every 15 s (and without scripts, a
// <noscript> refresh does).
(function () {
  "use strict";
  var live = document.getElementById("live");
  var main = document.getElementById("main");
  if (!window.EventSource) {
    setTimeout(function () { location.reload(); }, 15000);
    return;
  }
  var url = "/events?page=" + encodeURIComponent(location.pathname + location.search) +
    "&since=" + encodeURIComponent(main.getAttribute("data-version") || "0");
  var events = new EventSource(url);
  events.addEventListener("main", function (e) {
    main.innerHTML = e.data;
    live.textContent = "live · updated " + new Date().toLocaleTimeString();
  });
  events.onopen = function () { live.textContent = "live"; };
  events.onerror = function () { live.textContent = "reconnecting…"; };
})();
