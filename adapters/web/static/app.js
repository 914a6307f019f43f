// Baton's web view: live refresh while a goal runs, and the step control's slider.
// Served from the package itself; nothing is loaded from the internet.
(function () {
  "use strict";
  var body = document.body;
  var poll = body.getAttribute("data-poll");
  if (poll) {
    var seen = body.getAttribute("data-version");
    setInterval(function () {
      fetch(poll, {credentials: "same-origin"}).then(function (r) { return r.json(); })
        .then(function (data) {
          var now = String(data.version !== undefined ? data.version : data.head);
          if (seen === null) { seen = now; return; }
          if (now !== seen) { window.location.reload(); }
        }).catch(function () {});
    }, 1500);
  }
  var slider = document.getElementById("at-slider");
  var input = document.getElementById("at-input");
  if (slider && input) {
    slider.addEventListener("input", function () { input.value = slider.value; });
    slider.addEventListener("change", function () {
      var url = new URL(window.location.href);
      url.pathname = new URL(input.form.action).pathname;  // the goal's page, not a form's
      url.searchParams.set("at", slider.value);
      url.searchParams.delete("page");
      window.location.href = url.toString();
    });
    input.form.addEventListener("submit", function () { slider.disabled = true; });
  }
})();
