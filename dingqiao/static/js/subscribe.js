/* 订阅通知: WeChat's <wx-open-subscribe> button (templates/_subscribe.html) reports the member's choice as
   DOM events on the tag; a short toast tells them what happened. */
(function () {
  "use strict";

  function toast(text, ok) {
    var flash = document.getElementById("flash");
    if (!flash) { return; }
    var note = document.createElement("div");
    note.className = "dq-toast " + (ok ? "dq-toast--ok" : "dq-toast--error");
    note.setAttribute("role", ok ? "status" : "alert");
    note.textContent = text;
    flash.innerHTML = "";
    flash.appendChild(note);
    setTimeout(function () { if (note.parentNode) { note.parentNode.removeChild(note); } }, 3000);
  }

  // detail.subscribeDetails: JSON text, template id → JSON text {"status": "accept" | "reject" | "cancel" | …}.
  function accepted(detail) {
    try {
      var details = JSON.parse(detail.subscribeDetails || "{}");
      return Object.keys(details).some(function (id) { return JSON.parse(details[id]).status === "accept"; });
    } catch (e) {
      return false;
    }
  }

  function bind(root) {
    var tags = root.querySelectorAll ? Array.prototype.slice.call(root.querySelectorAll("[data-subscribe]")) : [];
    if (root.matches && root.matches("[data-subscribe]")) { tags.push(root); }
    tags.forEach(function (tag) {
      if (tag.dataset.bound) { return; }
      tag.dataset.bound = "1";
      tag.addEventListener("success", function (evt) {
        if (accepted(evt.detail || {})) { toast("已订阅，到账/发货时将通知您", true); }
        else { toast("未订阅，可随时再点“接收微信通知”", false); }
      });
      tag.addEventListener("error", function () { toast("订阅失败，请稍后再试", false); });
    });
  }

  document.addEventListener("DOMContentLoaded", function () { bind(document); });
  document.addEventListener("htmx:load", function (evt) { bind(evt.target); });
})();
