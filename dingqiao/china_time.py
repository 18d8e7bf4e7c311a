"""China's one time zone, the only home of UTC+8. The database keeps naive UTC; pages, order numbers, periods
(days, weeks, months) and WeChat Pay's times are Beijing time. China has kept no daylight saving since 1991,
so this zone is a fixed UTC+8 for every moment the shop will see."""
from zoneinfo import ZoneInfo

CHINA_TIME = ZoneInfo("Asia/Shanghai")
