/* 门店资料 → 使用我的位置: inside WeChat, wx.getLocation({type: "gcj02"}) fills the latitude and longitude fields
   (GCJ-02 is what outlets are stored in and what members' maps use). A browser's own position is WGS-84, several
   hundred metres off in China, so outside WeChat the button says it needs WeChat and the fields stay typed.
   The page loads this file itself; app.js signs the JS-SDK config (window.dingqiaoWxReady, WeChat only). */
(function () {
  "use strict";

  function bind(root) {
    var boxes = root.querySelectorAll ? root.querySelectorAll("[data-wx-locate]") : [];
    Array.prototype.forEach.call(boxes, function (box) {
      if (box.dataset.bound) { return; }
      box.dataset.bound = "1";
      var button = box.querySelector("[data-wx-locate-button]");
      var status = box.querySelector("[data-locate-status]");
      if (!window.dingqiaoWxReady) {
        button.disabled = true;
        button.textContent = "定位需在微信中打开";
        return;
      }
      button.addEventListener("click", function () {
        status.textContent = "正在定位…";
        window.dingqiaoWxReady.then(function () {
          window.wx.getLocation({
            type: "gcj02",
            success: function (res) {
              box.querySelector("[data-latitude]").value = Number(res.latitude).toFixed(6);
              box.querySelector("[data-longitude]").value = Number(res.longitude).toFixed(6);
              status.textContent = "已定位，点「保存」后生效";
            },
            cancel: function () { status.textContent = "已取消定位，可直接填写坐标"; },
            fail: function () { status.textContent = "未能获取位置：请允许微信使用位置后重试，或直接填写坐标"; }
          });
        }, function () { status.textContent = "微信定位暂不可用，请直接填写坐标"; });
      });
    });
  }

  // After app.js has set window.dingqiaoWxReady, which it does on DOMContentLoaded: on load, which comes after it
  // (a deferred script runs before DOMContentLoaded), or at once when htmx swapped the page in later. The htmx:load
  // listener is added once however often the page loads this file.
  if (document.readyState === "complete") {
    bind(document);
  } else {
    window.addEventListener("load", function () { bind(document); });
  }
  if (!window.dingqiaoOutletLocation) {
    window.dingqiaoOutletLocation = true;
    document.addEventListener("htmx:load", function (evt) { bind(evt.target); });
  }
})();
