/* Sharing: the share data WeChat uses when a member shares a product page (the sharer's referral code in the
   link), and the page's 分享 sheet. Loaded on every page (deferred); does nothing where there is nothing to share. */
(function () {
  "use strict";

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

  function init(root) { initShare(root); }

  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:load", function (evt) { init(evt.target); });
})();
