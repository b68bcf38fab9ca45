// The test panel answers as one types: the form is posted to its own action (the "try" URL) with the
// CSRF token in a header, and the outcome fragment replaces the one on the page. Without JavaScript the
// Try button posts the same form and the whole page comes back.
(function () {
  "use strict";
  var form = document.getElementById("playbook-form");
  if (!form) { return; }
  var token = document.querySelector('meta[name="csrf-token"]').getAttribute("content");
  var sample = document.getElementById("sample");
  var timer = null;
  var sent = 0;

  function tryNow() {
    var body = new FormData(form);
    var mine = ++sent;
    fetch(form.getAttribute("action"), {
      method: "POST", body: body, credentials: "same-origin",
      headers: {"X-CSRF-Token": token, "X-Fragment": "trial"}
    }).then(function (response) { return response.text(); }).then(function (html) {
      if (mine !== sent) { return; }  // an older answer arriving late
      var old = document.getElementById("trial-result");
      var holder = document.createElement("div");
      holder.innerHTML = html;
      var fresh = holder.querySelector("#trial-result");
      if (old && fresh) { old.replaceWith(fresh); }
    });
  }

  function soon() {
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(tryNow, 250);
  }

  document.getElementById("playbook").addEventListener("input", soon);
  document.getElementById("event").addEventListener("input", function () { sample.value = ""; soon(); });
  sample.addEventListener("change", tryNow);
  document.getElementById("try").addEventListener("click", function (e) { e.preventDefault(); tryNow(); });
})();
