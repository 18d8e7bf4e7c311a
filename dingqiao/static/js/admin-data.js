/* The data area (Flask-Admin) under our CSP, which runs no inline script. Flask-Admin's inline click handlers
   reach the page as data-fa-click (blueprints/admin/data/) and only these three are run, from here:
   "return modelActions.execute('name');" (bulk actions), "return faHelpers.safeConfirm('…');" (delete
   confirmation) and "return false;" (filter menu entries). */
(function () {
  "use strict";
  var ACTION = /^return modelActions\.execute\('([\w-]+)'\);?$/;
  var CONFIRM = /^return faHelpers\.safeConfirm\('((?:[^'\\]|\\.)*)'\);?$/;

  document.addEventListener("click", function (event) {
    var el = event.target.closest("[data-fa-click]");
    if (!el) return;
    var code = el.getAttribute("data-fa-click");
    var match;
    if ((match = code.match(ACTION))) {
      event.preventDefault();
      window.modelActions.execute(match[1]);
    } else if ((match = code.match(CONFIRM))) {
      if (!window.confirm(match[1].replace(/\\(.)/g, "$1"))) event.preventDefault();
    } else {
      event.preventDefault();
    }
  });

  // A form being sent: its submit buttons go off, so a double click posts once, and the one pressed shows a
  // spinner (admin-data.css .dq-busy). Runs after the confirm above: a cancelled confirm stops the click before
  // any submit, so nothing is disabled then. The back-forward cache can bring the page back as it was left:
  // the buttons come back on.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (event.defaultPrevented || form.dataset.dqSending) return;
    form.dataset.dqSending = "1";
    var pressed = event.submitter;
    if (pressed && pressed.name) {
      // A disabled button is not sent: keep the pressed one's name=value in the form.
      var carried = document.createElement("input");
      carried.type = "hidden";
      carried.name = pressed.name;
      carried.value = pressed.value;
      carried.setAttribute("data-dq-carried", "");
      form.appendChild(carried);
    }
    setTimeout(function () {  // after this event: disabling now would cancel the submission in some browsers
      form.querySelectorAll('button[type="submit"], button:not([type]), input[type="submit"]').forEach(function (button) {
        if (button.disabled) return;
        button.disabled = true;
        button.setAttribute("data-dq-disabled", "");
      });
      if (pressed) pressed.classList.add("dq-busy");
    }, 0);
  });

  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) return;
    document.querySelectorAll("form[data-dq-sending]").forEach(function (form) {
      delete form.dataset.dqSending;
      form.querySelectorAll("[data-dq-carried]").forEach(function (input) { input.remove(); });
      form.querySelectorAll(".dq-busy").forEach(function (button) { button.classList.remove("dq-busy"); });
      form.querySelectorAll("[data-dq-disabled]").forEach(function (button) {
        button.disabled = false;
        button.removeAttribute("data-dq-disabled");
      });
    });
  });
})();
