// The console's live badge: polls /console/live (the signed-in user's own counts) every few seconds and,
// when a new notification arrived, updates the badge and shows "new items – reload". No reload by
// itself: a person may be half-way through a form. Loaded from base.html (CSP: script-src 'self').
(function () {
  "use strict";

  function start() {
    var notice = document.getElementById("live");
    if (!notice) {
      return;
    }
    var every = Math.max(Number(notice.dataset.every) || 20, 1) * 1000;
    var latest = notice.dataset.latest;
    var unread = notice.dataset.count;
    var link = document.getElementById("nav-notifications");

    function showBadge(n, label, text) {
      if (!link) {
        return;
      }
      var badge = link.querySelector(".badge");
      if (n <= 0) {
        if (badge) {
          badge.remove();
        }
        return;
      }
      if (!badge) {
        badge = document.createElement("span");
        badge.className = "badge";
        link.appendChild(document.createTextNode(" "));
        link.appendChild(badge);
      }
      badge.textContent = text || String(n);
      badge.setAttribute("aria-label", label);
    }

    function update(counts) {
      if (String(counts.unread) !== unread) {
        unread = String(counts.unread);
        showBadge(counts.unread, counts.unread_label, counts.unread_text);
      }
      if (String(counts.latest) !== latest) {
        latest = String(counts.latest);
        notice.hidden = false;
      }
    }

    function poll() {
      fetch(notice.dataset.url, {
        credentials: "same-origin",
        redirect: "manual",
        headers: { Accept: "application/json" },
      })
        .then(function (response) {
          if (response.status === 401 || response.type === "opaqueredirect") {
            return false; // signed out, or sent to the sign-in page after the idle timeout: stop asking
          }
          if (response.ok) {
            return response.json().then(update).then(function () {
              return true;
            });
          }
          return true; // a passing server error: ask again later
        })
        .catch(function () {
          return true; // the network or a restarting server: ask again later
        })
        .then(function (again) {
          if (again) {
            window.setTimeout(poll, every);
          }
        });
    }

    window.setTimeout(poll, every);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
