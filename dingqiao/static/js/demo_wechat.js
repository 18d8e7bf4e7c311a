/* Demo mode only (templates/base.html loads it before the JS-SDK, with the simulated WeChat's address): a stand-in
   for what WeChat's in-app browser gives our pages — its user agent and its WeixinJSBridge — so the pages' own code
   (app.js, and WeChat's JS-SDK on top of the bridge) runs unchanged in a desktop browser against the simulated
   WeChat. 扫一扫 becomes a sheet that asks for the code; 确认收款 opens the simulator's own confirmation page in a
   small window, whose answer comes back as WeChat's would. */
(function () {
  "use strict";

  var simulator = document.currentScript.dataset.simulator;
  var simulatorOrigin = new URL(simulator).origin;

  // WeChat's browser is known to scripts by its user agent (app.js and the JS-SDK both look); the server still
  // sees the browser's own.
  if (!/MicroMessenger/i.test(navigator.userAgent)) {
    var agent = navigator.userAgent + " MicroMessenger/8.0.50 dingqiao-demo";
    Object.defineProperty(navigator, "userAgent", { get: function () { return agent; } });
  }

  // A WeUI half-screen sheet; ``build(body)`` fills its body and returns the value 确定 hands to ``done``.
  function sheet(title, build, done) {
    var root = document.createElement("div");
    root.innerHTML = '<div class="weui-mask"></div>' +
      '<div class="weui-half-screen-dialog" role="dialog" aria-modal="true">' +
      '<div class="weui-half-screen-dialog__hd"><strong class="weui-half-screen-dialog__title"></strong></div>' +
      '<form class="weui-half-screen-dialog__bd"></form><div class="weui-half-screen-dialog__ft">' +
      '<button type="button" class="weui-btn weui-btn_primary" data-answer="ok">确定</button>' +
      '<button type="button" class="weui-btn weui-btn_default" data-answer="cancel">取消</button></div></div>';
    root.querySelector("[role=dialog]").setAttribute("aria-label", title);
    root.querySelector(".weui-half-screen-dialog__title").textContent = title;
    var form = root.querySelector("form");
    var value = build(form);
    function close(answer) {
      root.parentNode.removeChild(root);
      done(answer, answer === "ok" ? value() : null);
    }
    form.addEventListener("submit", function (event) { event.preventDefault(); close("ok"); });
    Array.prototype.forEach.call(root.querySelectorAll("[data-answer]"), function (button) {
      button.addEventListener("click", function () { close(button.dataset.answer); });
    });
    document.body.appendChild(root);
    var first = form.querySelector("input");
    if (first) { first.focus(); }
  }

  // 扫一扫: the outlet types (or pastes) what the QR code holds, the pickup link or the 12-digit code.
  function scanQRCode(params, answer) {
    sheet("模拟扫一扫", function (body) {
      body.innerHTML = '<p class="dq-muted">演示：输入顾客核销二维码里的内容（12 位核销码或核销链接）</p>' +
        '<input class="dq-input" style="width:100%;box-sizing:border-box" name="scanned" autocomplete="off"' +
        ' aria-label="扫码内容">';
      var input = body.querySelector("input");
      return function () { return input.value.trim(); };
    }, function (choice, scanned) {
      if (choice !== "ok" || !scanned) { answer({ err_msg: "scanQRCode:cancel" }); return; }
      answer(params.needResult === 1 ? { err_msg: "scanQRCode:ok", resultStr: scanned } : { err_msg: "scanQRCode:ok" });
    });
  }

  // 确认收款: WeChat's confirmation page is the simulator's; it posts the member's answer back to this window.
  function requestMerchantTransfer(params, answer) {
    var page = simulator + "/transfer/confirm?package=" + encodeURIComponent(params.package || "") +
      "&origin=" + encodeURIComponent(window.location.origin);
    var popup = window.open(page, "dq-wechat-transfer", "popup,width=420,height=720");
    if (!popup) { answer({ err_msg: "requestMerchantTransfer:fail popup blocked" }); return; }
    var finished = false;
    function finish(result) {
      if (finished) { return; }
      finished = true;
      window.removeEventListener("message", listen);
      window.clearInterval(watch);
      answer({ err_msg: result });
    }
    function listen(event) {
      if (event.origin === simulatorOrigin && event.source === popup && event.data && event.data.err_msg) {
        finish(String(event.data.err_msg));
      }
    }
    window.addEventListener("message", listen);
    // Closed without an answer: the member backed out. A moment's grace lets an answer sent on closing arrive.
    var watch = window.setInterval(function () {
      if (popup.closed) { window.setTimeout(function () { finish("requestMerchantTransfer:cancel"); }, 500); }
    }, 300);
  }

  var bridge = {
    // wx.config. WeChat checks the signature against the ticket it issued; our pages may not reach the simulator
    // (CSP connect-src 'self'), so here only its form is checked — the demo's tests ask the simulator itself.
    preVerifyJSAPI: function (params, answer) {
      var signed = /^[0-9a-f]{40}$/.test(params.verifySignature || "") && params.verifyAppId && params.verifyNonceStr;
      answer({ err_msg: signed ? "preVerifyJSAPI:ok" : "preVerifyJSAPI:fail invalid signature" });
    },
    checkJsApi: function (params, answer) {
      var result = {};
      (params.jsApiList || []).forEach(function (name) { result[name] = bridge.hasOwnProperty(name); });
      answer({ err_msg: "checkJsApi:ok", checkResult: result });
    },
    scanQRCode: scanQRCode,
    requestMerchantTransfer: requestMerchantTransfer,
    updateAppMessageShareData: function (params, answer) { answer({ err_msg: "updateAppMessageShareData:ok" }); },
    updateTimelineShareData: function (params, answer) { answer({ err_msg: "updateTimelineShareData:ok" }); }
  };

  window.WeixinJSBridge = {
    invoke: function (name, params, callback) {
      var answer = function (result) { window.setTimeout(function () { if (callback) { callback(result); } }, 0); };
      if (bridge.hasOwnProperty(name)) { bridge[name](params || {}, answer); }
      else { answer({ err_msg: name + ":fail not in the demo" }); }  // getLocation: the browser's own is used
    },
    on: function () {}
  };
})();
