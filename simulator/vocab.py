"""Curated vocabularies for a realistic Jiangmen: places, names, firms, service items.

Faker zh_CN is not realistic enough (docs/architecture.md §4): its addresses mix provinces at
random and its company names repeat. These lists are small and hand-picked so that whole columns can
be drawn with one ``rng.choice`` each. Every character here is encodable in GBK, because
the 人社 drop is written in GBK.
"""

from __future__ import annotations

import numpy as np

from catalog.identifiers import JIANGMEN_DIVISIONS

# --- geography ---------------------------------------------------------------------------

DISTRICT_CODES: list[str] = list(JIANGMEN_DIVISIONS)  # 440703 ... 440785, in that order
DISTRICT_NAMES: list[str] = [JIANGMEN_DIVISIONS[c] for c in DISTRICT_CODES]
# Share of Jiangmen's registered population living in each district (roughly, 2017).
DISTRICT_WEIGHTS = np.array([0.20, 0.06, 0.18, 0.19, 0.14, 0.10, 0.10])
DISTRICT_SHORT: list[str] = ["蓬江", "江海", "新会", "台山", "开平", "鹤山", "恩平"]

TOWNS: dict[str, list[str]] = {
    "440703": ["环市街道", "白沙街道", "潮连街道", "杜阮镇", "棠下镇", "荷塘镇"],
    "440704": ["江南街道", "外海街道", "礼乐街道"],
    "440705": [
        "会城街道",
        "大泽镇",
        "司前镇",
        "罗坑镇",
        "双水镇",
        "崖门镇",
        "沙堆镇",
        "古井镇",
        "三江镇",
        "睦洲镇",
        "大鳌镇",
    ],
    "440781": [
        "台城街道",
        "大江镇",
        "水步镇",
        "四九镇",
        "白沙镇",
        "三合镇",
        "冲蒌镇",
        "斗山镇",
        "都斛镇",
        "赤溪镇",
        "端芬镇",
        "广海镇",
        "海宴镇",
        "汶村镇",
        "深井镇",
        "北陡镇",
        "川岛镇",
    ],
    "440783": [
        "长沙街道",
        "三埠街道",
        "沙冈街道",
        "水口镇",
        "月山镇",
        "沙塘镇",
        "苍城镇",
        "龙胜镇",
        "大沙镇",
        "马冈镇",
        "塘口镇",
        "赤坎镇",
        "百合镇",
        "蚬冈镇",
        "金鸡镇",
        "赤水镇",
    ],
    "440784": [
        "沙坪街道",
        "龙口镇",
        "雅瑶镇",
        "古劳镇",
        "桃源镇",
        "鹤城镇",
        "共和镇",
        "址山镇",
        "宅梧镇",
        "双合镇",
    ],
    "440785": [
        "恩城街道",
        "横陂镇",
        "圣堂镇",
        "良西镇",
        "沙湖镇",
        "牛江镇",
        "君堂镇",
        "大田镇",
        "那吉镇",
        "大槐镇",
        "东成镇",
    ],
}
# Flattened town table: TOWN_NAMES[i] lies in district TOWN_DISTRICT[i].
TOWN_NAMES: np.ndarray = np.array([t for code in DISTRICT_CODES for t in TOWNS[code]])
TOWN_DISTRICT: np.ndarray = np.array(
    [i for i, code in enumerate(DISTRICT_CODES) for _ in TOWNS[code]], dtype=np.int8
)
TOWN_IS_STREET: np.ndarray = np.char.endswith(TOWN_NAMES, "街道")

ROADS: np.ndarray = np.array(
    [
        "建设路",
        "港口路",
        "胜利路",
        "跃进路",
        "迎宾大道",
        "江华路",
        "农林路",
        "白石大道",
        "东华路",
        "华园路",
        "龙湾路",
        "五邑路",
        "永盛路",
        "丰乐路",
        "仓后路",
        "长堤路",
        "堤中路",
        "新市路",
        "紫莱路",
        "江门大道",
        "金瓯路",
        "发展大道",
        "五四路",
        "环城路",
        "中山路",
        "人民路",
        "新华路",
        "桥东路",
        "健康路",
        "文化路",
        "公园路",
        "光明路",
        "南兴路",
        "北街路",
        "东门路",
        "西门路",
        "富民路",
        "和平路",
        "迎春路",
        "朝阳路",
        "育英路",
        "振兴路",
        "兴业路",
        "工业大道",
        "滨江路",
        "沿江路",
        "圭峰路",
        "冈州大道",
        "今古洲路",
        "侨兴路",
        "台东路",
        "石花路",
        "环北大道",
        "新昌路",
        "楼冈大道",
        "鹤山大道",
        "沙坪大道",
        "锦江路",
        "恩新路",
        "东湖路",
    ]
)

# Where residents whose IDs were issued elsewhere come from (GB/T 2260 codes).
OUTSIDE_DIVISIONS: np.ndarray = np.array(
    [
        "440103",
        "440106",
        "440111",
        "440304",
        "440306",
        "440604",
        "440606",
        "442000",
        "440402",
        "441900",
        "440803",
        "440902",
        "441702",
        "445302",
        "441202",
        "440513",
        "450102",
        "450921",
        "430124",
        "431102",
        "510122",
        "511102",
        "360121",
        "420102",
        "411302",
        "350102",
        "520102",
        "530102",
    ]
)
# Retired Jiangmen codes (catalog.identifiers.JIANGMEN_RETIRED_DIVISIONS) by current district.
RETIRED_BY_DISTRICT: dict[str, list[str]] = {
    "440703": ["440702", "440711"],
    "440704": ["440711"],
    "440705": ["440721"],
    "440781": ["440722"],
    "440783": ["440724"],
    "440784": ["440725"],
    "440785": ["440723"],
}
XINHUI_CITY_CODE = "440782"  # 新会市, 1992-2002

# --- people ------------------------------------------------------------------------------

# Five-year age bands 0-4 ... 95-99, share of the population (roughly Guangdong, 2020 census).
AGE_BAND_WEIGHTS = np.array(
    [
        6.9,
        7.0,
        6.0,
        5.3,
        6.6,
        8.5,
        10.0,
        8.6,
        7.8,
        7.6,
        7.0,
        5.3,
        4.0,
        3.7,
        2.5,
        1.6,
        1.0,
        0.5,
        0.2,
        0.05,
    ]
)

# Jiangmen's common surnames, weighted (陈 by far the most common; 司徒/欧阳 in 开平/台山).
SURNAMES: list[tuple[str, float]] = [
    ("陈", 11.0),
    ("李", 7.0),
    ("黄", 6.5),
    ("梁", 5.5),
    ("张", 4.0),
    ("林", 3.5),
    ("吴", 3.3),
    ("关", 2.5),
    ("余", 2.5),
    ("谭", 2.4),
    ("刘", 2.4),
    ("何", 2.2),
    ("冯", 2.0),
    ("甄", 1.2),
    ("邓", 1.8),
    ("叶", 1.6),
    ("区", 1.2),
    ("伍", 1.5),
    ("郑", 1.4),
    ("杨", 1.4),
    ("周", 1.2),
    ("罗", 1.2),
    ("朱", 1.0),
    ("麦", 1.0),
    ("钟", 1.0),
    ("许", 0.9),
    ("赵", 0.8),
    ("苏", 0.8),
    ("卢", 0.8),
    ("胡", 0.8),
    ("马", 0.7),
    ("汤", 0.6),
    ("司徒", 0.9),
    ("欧阳", 0.4),
    ("雷", 0.5),
    ("容", 0.5),
    ("邝", 0.6),
    ("岑", 0.5),
    ("源", 0.4),
    ("汪", 0.4),
    ("蔡", 0.6),
    ("曾", 0.6),
    ("彭", 0.5),
    ("莫", 0.6),
    ("温", 0.5),
    ("袁", 0.4),
    ("潘", 0.5),
    ("方", 0.4),
]
SURNAME_CHARS: np.ndarray = np.array([s for s, _ in SURNAMES])
SURNAME_WEIGHTS: np.ndarray = np.array([w for _, w in SURNAMES])

GIVEN_MALE: np.ndarray = np.unique(
    list(
        "伟明华强军杰涛磊勇辉健峰斌志宇俊文东国荣庆贤锦龙威海波洪浩鹏飞翔振兴家"
        "立新永光耀宏彬达成坚汉民学德江林松柏桂锋聪毅超启宗炳棠灿鸿基昌"
    )
)
GIVEN_FEMALE: np.ndarray = np.unique(
    list(
        "丽芳敏静艳娟霞平婷雪红玲燕萍秀英玉兰凤琴美慧淑嘉欣颖彩霞晓月莉妹娇"
        "翠琼珍珠瑞梅少爱巧妙韵诗雅洁倩宝小桂银金"
    )
)
GIVEN_CHARS: np.ndarray = np.unique(np.concatenate([GIVEN_MALE, GIVEN_FEMALE]))

# Simplified -> traditional, for the "traditional characters" name variant (陳/陈).
TRADITIONAL: dict[str, str] = {
    "陈": "陳",
    "黄": "黃",
    "张": "張",
    "刘": "劉",
    "谭": "譚",
    "吴": "吳",
    "关": "關",
    "邓": "鄧",
    "冯": "馮",
    "叶": "葉",
    "郑": "鄭",
    "杨": "楊",
    "赵": "趙",
    "苏": "蘇",
    "罗": "羅",
    "许": "許",
    "区": "區",
    "钟": "鍾",
    "汤": "湯",
    "卢": "盧",
    "麦": "麥",
    "马": "馬",
    "邝": "鄺",
    "伟": "偉",
    "华": "華",
    "丽": "麗",
    "军": "軍",
    "红": "紅",
    "国": "國",
    "东": "東",
    "强": "強",
    "杰": "傑",
    "龙": "龍",
    "凤": "鳳",
    "兰": "蘭",
    "荣": "榮",
    "庆": "慶",
    "贤": "賢",
    "锦": "錦",
    "涛": "濤",
    "辉": "輝",
    "艳": "艷",
    "鸿": "鴻",
    "宝": "寶",
    "爱": "愛",
    "诗": "詩",
    "韵": "韻",
    "琼": "瓊",
    "颖": "穎",
    "汉": "漢",
    "兴": "興",
    "飞": "飛",
    "鹏": "鵬",
}
# Same pronunciation, different character: the typo a clerk makes from a spoken name.
HOMOPHONES: dict[str, str] = {
    "伟": "玮",
    "明": "鸣",
    "华": "骅",
    "丽": "俪",
    "芳": "方",
    "敏": "闽",
    "静": "靖",
    "军": "君",
    "杰": "洁",
    "涛": "滔",
    "磊": "垒",
    "勇": "永",
    "艳": "燕",
    "娟": "鹃",
    "霞": "侠",
    "平": "萍",
    "辉": "晖",
    "健": "建",
    "峰": "锋",
    "婷": "亭",
    "红": "宏",
    "文": "雯",
    "斌": "彬",
    "玉": "钰",
    "英": "瑛",
    "志": "智",
    "宇": "雨",
    "嘉": "佳",
    "欣": "鑫",
    "俊": "骏",
    "兰": "岚",
    "玲": "琳",
    "凤": "峰",
    "荣": "容",
    "锦": "瑾",
    "波": "博",
    "超": "潮",
    "成": "诚",
    "东": "冬",
    "海": "凯",
    "洪": "宏",
    "秀": "绣",
}

ETHNICITIES: np.ndarray = np.array(
    ["汉族", "壮族", "瑶族", "土家族", "苗族", "回族", "满族", "侗族", "布依族", "畲族"]
)
ETHNICITY_WEIGHTS = np.array([98.4, 0.6, 0.2, 0.2, 0.15, 0.1, 0.1, 0.1, 0.1, 0.05])

MOBILE_PREFIXES: np.ndarray = np.array(
    [
        134,
        135,
        136,
        137,
        138,
        139,
        147,
        150,
        151,
        152,
        157,
        158,
        159,
        178,
        182,
        183,
        184,
        187,
        188,
        198,
        130,
        131,
        132,
        155,
        156,
        166,
        175,
        176,
        185,
        186,
        133,
        153,
        173,
        177,
        180,
        181,
        189,
        191,
        199,
    ]
)

# --- enterprises -------------------------------------------------------------------------

# 字号 characters: pairs of these give tens of thousands of distinct trade names.
TRADE_NAME_CHARS: np.ndarray = np.array(
    list(
        "金银宝利达丰盛兴隆昌荣华泰顺发源鑫鸿运通联合富恒永安康健宏伟志诚信德嘉裕瑞祥"
        "福禄寿喜乐和美佳新星光明辉亮晶彩艺雅致精品优胜冠豪雄威力强劲创科技智慧迅捷捷"
        "凯旋腾飞跃远航海洋江河湖山峰岭松柏竹梅兰菊桂林森茂盈满丰收万千百亿众邦汇聚"
        "群英杰俊秀逸龙凤麒麟鹏鹰燕雁鸿鹤锦绣华章文博学思源本立达诚正直方圆中南北东"
        "西城乡侨港澳台粤邑五邑蓬江新会冈州圭峰银洲潭江泰和丰泽润泉溪涌湾岛屿天地日"
        "月辰宇宙乾坤坤元亨贞吉祥如意吉星高照百顺全家盛世太平长青常春永恒久远广大宽"
    )
)
TRADE_NAME_CHARS = np.unique(TRADE_NAME_CHARS)

# (industry term, sector for the tax bureau's 行业 column, shop suffixes for 个体户)
INDUSTRIES: list[tuple[str, str]] = [
    ("五金", "制造业"),
    ("电器", "制造业"),
    ("摩托车", "制造业"),
    ("纺织", "制造业"),
    ("食品", "制造业"),
    ("建材", "批发和零售业"),
    ("贸易", "批发和零售业"),
    ("科技", "信息传输、软件和信息技术服务业"),
    ("物流", "交通运输、仓储和邮政业"),
    ("餐饮", "住宿和餐饮业"),
    ("电子", "制造业"),
    ("印刷", "制造业"),
    ("家具", "制造业"),
    ("水产", "农、林、牧、渔业"),
    ("不锈钢制品", "制造业"),
    ("卫浴", "制造业"),
    ("塑料制品", "制造业"),
    ("服装", "制造业"),
    ("化工", "制造业"),
    ("机械", "制造业"),
    ("汽车配件", "制造业"),
    ("房地产开发", "房地产业"),
    ("建筑工程", "建筑业"),
    ("装饰工程", "建筑业"),
    ("酒店管理", "住宿和餐饮业"),
    ("农业发展", "农、林、牧、渔业"),
    ("信息咨询", "租赁和商务服务业"),
    ("广告", "租赁和商务服务业"),
    ("医药", "批发和零售业"),
    ("陶瓷", "制造业"),
    ("灯饰", "制造业"),
    ("纸品", "制造业"),
]
INDUSTRY_TERMS: np.ndarray = np.array([t for t, _ in INDUSTRIES])
INDUSTRY_SECTORS: np.ndarray = np.array([s for _, s in INDUSTRIES])
SHOP_SUFFIXES: np.ndarray = np.array(["店", "行", "商行", "经营部", "厂", "档"])

# Enterprise types exactly as gongshang.enterprise_registration.ent_type allows them.
ENT_TYPES: np.ndarray = np.array(
    ["有限责任公司", "股份有限公司", "个人独资企业", "合伙企业", "个体工商户"]
)
ENT_TYPE_WEIGHTS = np.array([0.56, 0.02, 0.05, 0.02, 0.35])
ENT_INDIVIDUAL = 4  # index of 个体工商户

# --- health ------------------------------------------------------------------------------

BLOOD_TYPES: np.ndarray = np.array(["O", "A", "B", "AB", "不详"])
BLOOD_WEIGHTS = np.array([0.44, 0.26, 0.22, 0.06, 0.02])
CHRONIC: np.ndarray = np.array(
    ["高血压", "糖尿病", "冠心病", "慢性阻塞性肺病", "脑卒中", "慢性肾病"]
)
CHRONIC_WEIGHTS = np.array([0.45, 0.25, 0.1, 0.08, 0.07, 0.05])

# --- service centre ----------------------------------------------------------------------

PERSON_ITEMS: list[tuple[str, str]] = [
    ("公安局", "居民身份证换领"),
    ("公安局", "户口迁移登记"),
    ("公安局", "往来港澳通行证签注"),
    ("公安局", "出生登记"),
    ("人社局", "社会保障卡申领"),
    ("人社局", "失业登记"),
    ("人社局", "职业资格证书核发"),
    ("人社局", "养老保险关系转移"),
    ("卫计局", "生育登记"),
    ("卫计局", "出生医学证明补发"),
    ("民政局", "结婚登记"),
    ("民政局", "最低生活保障申请"),
    ("住房公积金中心", "住房公积金提取"),
    ("国土资源局", "不动产登记"),
    ("交通运输局", "机动车驾驶证换证"),
    ("残联", "残疾人证办理"),
    ("教育局", "学籍证明"),
]
ENTERPRISE_ITEMS: list[tuple[str, str]] = [
    ("工商局", "企业设立登记"),
    ("工商局", "企业变更登记"),
    ("工商局", "企业注销登记"),
    ("工商局", "个体工商户注册登记"),
    ("国税局", "增值税发票领购"),
    ("国税局", "税务登记"),
    ("地税局", "税务登记变更"),
    ("地税局", "完税证明开具"),
    ("质监局", "组织机构代码证换证"),
    ("食药监局", "食品经营许可"),
    ("环保局", "排污许可证核发"),
    ("住建局", "建筑工程施工许可"),
    ("安监局", "安全生产许可"),
    ("人社局", "单位参保登记"),
    ("消防支队", "消防安全检查"),
]
SATISFACTION: np.ndarray = np.array(["非常满意", "满意", "基本满意", "不满意"])
SATISFACTION_WEIGHTS = np.array([0.55, 0.36, 0.07, 0.02])
CHANNELS: np.ndarray = np.array(["窗口", "网上", "自助终端"])
CHANNEL_WEIGHTS = np.array([0.62, 0.33, 0.05])


def normalised(weights: np.ndarray) -> np.ndarray:
    """Weights as probabilities (rng.choice needs them to sum to 1)."""
    weights = np.asarray(weights, dtype=float)
    return weights / weights.sum()
