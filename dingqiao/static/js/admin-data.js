/* The data area (Flask-Admin) under our CSP, which allows no inline script. Flask-Admin's templates put three
   kinds of inline click handler on links and buttons; each is moved off the element and run from here:
   "return modelActions.execute('name');" (bulk actions), "return faHelpers.safeConfirm('…');" (delete
   confirmation) and "return false;" (filter menu entries). Anything else is left alone and stays blocked. */
(function () {
  "use strict";
  var ACTION = /^return modelActions\.execute\('([\w-]+)'\);?$/;
  var CONFIRM = /^return faHelpers\.safeConfirm\('((?:[^'\\]|\\.)*)'\);?$/;
  var NOTHING = /^return false;?$/;

  function adopt(root) {
    root.querySelectorAll("[onclick]").forEach(function (el) {
      var code = el.getAttribute("onclick").trim();
      if (ACTION.test(code) || CONFIRM.test(code) || NOTHING.test(code)) {
        el.setAttribute("data-fa-click", code);
        el.removeAttribute("onclick");
      }
    });
  }

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

  adopt(document);
})();
