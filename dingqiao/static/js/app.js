/* Dingqiao's few behaviours that need the browser: where the member is (checkout), and WeChat Pay's
   JS bridge. Everything else is htmx attributes in the templates. No inline scripts (CSP script-src 'self'). */
(function () {
  "use strict";

  // Inside WeChat: sign a JS-SDK config for this page and expose wx.ready as a promise.
  function initWechatJssdk() {
    var meta = document.querySelector('meta[name="dq-jssdk-config"]');
    if (!meta || !window.wx || !/MicroMessenger/i.test(navigator.userAgent) || window.dingqiaoWxReady) { return; }
    var page = window.location.href.split("#")[0];
    window.dingqiaoWxReady = fetch(meta.content + "?url=" + encodeURIComponent(page), { credentials: "same-origin" })
      .then(function (res) { return res.json(); })
      .then(function (cfg) {
        if (!cfg.enabled) { throw new Error("jssdk disabled"); }
        return new Promise(function (resolve, reject) {
          window.wx.config({ debug: false, appId: cfg.appId, timestamp: cfg.timestamp, nonceStr: cfg.nonceStr,
                             signature: cfg.signature, jsApiList: cfg.jsApiList });
          window.wx.ready(resolve);
          window.wx.error(reject);
        });
      });
  }

  function locate(done) {
    // Inside WeChat with a signed JS-SDK config: wx.getLocation gives GCJ-02, the coordinates outlets use.
    if (window.wx && window.dingqiaoWxReady) {
      window.dingqiaoWxReady.then(function () {
        window.wx.getLocation({
          type: "gcj02",
          success: function (res) { done(res.latitude, res.longitude); },
          fail: function () { browserLocate(done); }
        });
      }, function () { browserLocate(done); });
      return;
    }
    browserLocate(done);
  }

  function browserLocate(done) {
    if (!navigator.geolocation) { done(null, null); return; }
    navigator.geolocation.getCurrentPosition(
      function (pos) { done(pos.coords.latitude, pos.coords.longitude); },
      function () { done(null, null); },
      { timeout: 8000, maximumAge: 600000 }
    );
  }

  function initOutletList(root) {
    var list = root.querySelector ? root.querySelector("[data-locate-url]") : null;
    if (!list && root.matches && root.matches("[data-locate-url]")) { list = root; }
    if (!list || list.dataset.located) { return; }
    list.dataset.located = "1";
    locate(function (lat, lng) {
      var note = list.querySelector(".dq-locating");
      if (lat === null) { if (note) { note.textContent = "未获取到位置，门店按区域排列"; } return; }
      var url = list.dataset.locateUrl + "?lat=" + encodeURIComponent(lat) + "&lng=" + encodeURIComponent(lng);
      window.htmx.ajax("GET", url, { target: "#outlet-list", swap: "outerHTML" });
    });
  }

  function initWechatPay(root) {
    var el = root.querySelector ? root.querySelector("[data-wechat-pay]") : null;
    if (!el) { return; }
    var params = JSON.parse(el.dataset.wechatPay);
    var done = function () { window.location.href = el.dataset.returnUrl; };
    if (typeof window.WeixinJSBridge === "undefined") {
      el.textContent = "请在微信中打开本页面完成支付";
      return;
    }
    window.WeixinJSBridge.invoke("getBrandWCPayRequest", params, function (res) {
      if (res.err_msg === "get_brand_wcpay_request:ok") { done(); }
      else if (res.err_msg === "get_brand_wcpay_request:cancel") { el.textContent = "已取消支付"; }
      else { el.textContent = "支付未完成，请重试"; }
    });
  }

  // 扫码核销: WeChat's scanner reads the pickup QR (a URL ending in the 12-digit code) or a bare code.
  function initScanButton(root) {
    var button = root.querySelector ? root.querySelector("[data-scan-url]") : null;
    if (!button || button.dataset.bound) { return; }
    button.dataset.bound = "1";
    if (!window.dingqiaoWxReady) { button.disabled = true; return; }
    button.addEventListener("click", function () {
      window.dingqiaoWxReady.then(function () {
        window.wx.scanQRCode({
          needResult: 1,
          scanType: ["qrCode", "barCode"],
          success: function (res) {
            var match = /(\d{12})\s*$/.exec(String(res.resultStr || "").replace(/[\s-]/g, ""));
            var code = match ? match[1] : String(res.resultStr || "");
            window.htmx.ajax("GET", button.dataset.scanUrl + "?code=" + encodeURIComponent(code),
                             { target: "#redeem-result", swap: "outerHTML" });
          }
        });
      });
    });
  }

  // Shares from a product page carry the sharer's referral code (data-share-* on the article).
  function initShare(root) {
    var el = root.querySelector ? root.querySelector("[data-share-link]") : null;
    if (!el || !window.dingqiaoWxReady) { return; }
    window.dingqiaoWxReady.then(function () {
      var share = { title: el.dataset.shareTitle, desc: el.dataset.shareDesc, link: el.dataset.shareLink,
                    imgUrl: el.dataset.shareImg || "" };
      window.wx.updateAppMessageShareData(share);
      window.wx.updateTimelineShareData({ title: share.title, link: share.link, imgUrl: share.imgUrl });
    }, function () {});
  }

  function init(root) {
    initWechatJssdk(); initOutletList(root); initWechatPay(root); initScanButton(root); initShare(root);
  }

  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:load", function (evt) { init(evt.target); });
})();
