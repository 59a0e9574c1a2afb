"""Stand-ins of the retrieval benchmarks, in their real published layouts, where their real loaders look.

Each maker writes into ``raw_dir`` (``<data_dir>/raw/<id>/``) what the registry entry lists, with the real
member paths, file names and formats, and leaves ``STANDIN.json`` with its own counts (``expect``) and the
pins of what it wrote (as the detection stand-ins: sha256 where the registry pins one, md5 where it has
one). The real ``prepare_retrieval_dataset`` reads them unchanged; the same ``seed`` writes the same bytes.

Class folders (``retrieval_class_folders``; at least two images per class, so that every class has a
query and a positive):

* ``cub200``: ``CUB_200_2011.tgz`` → ``CUB_200_2011/images/<NNN.Species>/<Species>_<NNNN>_<id>.jpg`` for all
  200 species (500-pixel JPEGs), with ``images.txt``, ``classes.txt``, ``image_class_labels.txt``,
  ``train_test_split.txt``, ``bounding_boxes.txt`` and ``README``;
* ``inaturalist_val``: ``val.tar.gz`` → ``val/<NNNNN_Kingdom_…_species>/<uuid>.jpg``, the 10 images per
  species of the real val split (longer side 500), for a subset of 22 of the 10,000 species (real
  folder names), so that the loader's "first 5 per class" cut has something to cut;
* ``objectnet``: ``objectnet-1.0/images/<folder>/<15 hex>.png`` (unzipped by hand, as the registry says)
  for all 313 folders, PNGs with ObjectNet's 1-pixel red border, plus
  ``objectnet-1.0/mappings/folder_to_objectnet_label.json``;
* ``instre_s1``: ``instre.tar.gz`` → ``INSTRE-S1/<NNx_name>/<NNN>.jpg`` and its box ``<NNN>.txt``, all 100
  classes.

Landmarks and copies:

* ``gldv2_retrieval``: every shard the entry names (``index/images_NNN.tar``, ``test/images_NNN.tar``,
  images at ``a/b/c/<16-hex id>.jpg``), the md5 listing the loader checks each shard against
  (``md5sum/<part>/md5.images_NNN.txt``, written where the loader looks, so it does not fetch them), and
  ``retrieval_solution_v2.1.csv`` (``id,images,Usage``; Public/Private rows with index images, Ignored
  rows with ``None``);
* ``roxford5k`` / ``rparis6k``: the image archives (Oxford flat, Paris ``paris/<landmark>/…``, split over
  ``paris_1`` and ``paris_2`` as the real ones, with two unreadable files as Paris has) and revisitop's
  ``gnd_*.pkl``: a dict with ``imlist``, ``qimlist`` (70 queries over the 11 landmarks: 5 each plus the
  15 new ones) and ``gnd`` (per query ``bbx`` and ``easy`` / ``hard`` / ``junk`` lists of database
  indices, plain Python lists), 1024-pixel JPEGs;
* ``copydays``: ``copydays_{original,strong,jpeg,crop}.tar.gz`` → ``original/<GGGG>00.jpg``,
  ``strong/<GGGG><NN>.jpg``, ``jpegqual/<q>/…`` (q in 3 … 75, the real JPEG qualities) and
  ``crops/<p>/…`` (p in 10 … 80 percent of the surface cut away).
"""

from __future__ import annotations

import csv
import io
import json
import pickle
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from bobench.rehearsal.images import standin_pixels
from bobench.rehearsal.manifest import StandinError
from bobench.rehearsal.standin_detection import (
    archive_bytes,
    begin_standin,
    entry_files,
    finish_standin,
    jpeg,
    pins_for,
    png,
    standin_rng,
    write_file,
)

# --------------------------------------------------------------------------- the real class folders

#: CUB-200-2011's 200 species folders (classes.txt).
CUB_SPECIES = """
    Black_footed_Albatross Laysan_Albatross Sooty_Albatross Groove_billed_Ani Crested_Auklet Least_Auklet
    Parakeet_Auklet Rhinoceros_Auklet Brewer_Blackbird Red_winged_Blackbird Rusty_Blackbird
    Yellow_headed_Blackbird Bobolink Indigo_Bunting Lazuli_Bunting Painted_Bunting Cardinal Spotted_Catbird
    Gray_Catbird Yellow_breasted_Chat Eastern_Towhee Chuck_will_Widow Brandt_Cormorant Red_faced_Cormorant
    Pelagic_Cormorant Bronzed_Cowbird Shiny_Cowbird Brown_Creeper American_Crow Fish_Crow Black_billed_Cuckoo
    Mangrove_Cuckoo Yellow_billed_Cuckoo Gray_crowned_Rosy_Finch Purple_Finch Northern_Flicker
    Acadian_Flycatcher Great_Crested_Flycatcher Least_Flycatcher Olive_sided_Flycatcher
    Scissor_tailed_Flycatcher Vermilion_Flycatcher Yellow_bellied_Flycatcher Frigatebird Northern_Fulmar Gadwall
    American_Goldfinch European_Goldfinch Boat_tailed_Grackle Eared_Grebe Horned_Grebe Pied_billed_Grebe
    Western_Grebe Blue_Grosbeak Evening_Grosbeak Pine_Grosbeak Rose_breasted_Grosbeak Pigeon_Guillemot
    California_Gull Glaucous_winged_Gull Heermann_Gull Herring_Gull Ivory_Gull Ring_billed_Gull
    Slaty_backed_Gull Western_Gull Anna_Hummingbird Ruby_throated_Hummingbird Rufous_Hummingbird Green_Violetear
    Long_tailed_Jaeger Pomarine_Jaeger Blue_Jay Florida_Jay Green_Jay Dark_eyed_Junco Tropical_Kingbird
    Gray_Kingbird Belted_Kingfisher Green_Kingfisher Pied_Kingfisher Ringed_Kingfisher White_breasted_Kingfisher
    Red_legged_Kittiwake Horned_Lark Pacific_Loon Mallard Western_Meadowlark Hooded_Merganser
    Red_breasted_Merganser Mockingbird Nighthawk Clark_Nutcracker White_breasted_Nuthatch Baltimore_Oriole
    Hooded_Oriole Orchard_Oriole Scott_Oriole Ovenbird Brown_Pelican White_Pelican Western_Wood_Pewee Sayornis
    American_Pipit Whip_poor_Will Horned_Puffin Common_Raven White_necked_Raven American_Redstart Geococcyx
    Loggerhead_Shrike Great_Grey_Shrike Baird_Sparrow Black_throated_Sparrow Brewer_Sparrow Chipping_Sparrow
    Clay_colored_Sparrow House_Sparrow Field_Sparrow Fox_Sparrow Grasshopper_Sparrow Harris_Sparrow
    Henslow_Sparrow Le_Conte_Sparrow Lincoln_Sparrow Nelson_Sharp_tailed_Sparrow Savannah_Sparrow
    Seaside_Sparrow Song_Sparrow Tree_Sparrow Vesper_Sparrow White_crowned_Sparrow White_throated_Sparrow
    Cape_Glossy_Starling Bank_Swallow Barn_Swallow Cliff_Swallow Tree_Swallow Scarlet_Tanager Summer_Tanager
    Artic_Tern Black_Tern Caspian_Tern Common_Tern Elegant_Tern Forsters_Tern Least_Tern Green_tailed_Towhee
    Brown_Thrasher Sage_Thrasher Black_capped_Vireo Blue_headed_Vireo Philadelphia_Vireo Red_eyed_Vireo
    Warbling_Vireo White_eyed_Vireo Yellow_throated_Vireo Bay_breasted_Warbler Black_and_white_Warbler
    Black_throated_Blue_Warbler Blue_winged_Warbler Canada_Warbler Cape_May_Warbler Cerulean_Warbler
    Chestnut_sided_Warbler Golden_winged_Warbler Hooded_Warbler Kentucky_Warbler Magnolia_Warbler
    Mourning_Warbler Myrtle_Warbler Nashville_Warbler Orange_crowned_Warbler Palm_Warbler Pine_Warbler
    Prairie_Warbler Prothonotary_Warbler Swainson_Warbler Tennessee_Warbler Wilson_Warbler Worm_eating_Warbler
    Yellow_Warbler Northern_Waterthrush Louisiana_Waterthrush Bohemian_Waxwing Cedar_Waxwing
    American_Three_toed_Woodpecker Pileated_Woodpecker Red_bellied_Woodpecker Red_cockaded_Woodpecker
    Red_headed_Woodpecker Downy_Woodpecker Bewick_Wren Cactus_Wren Carolina_Wren House_Wren Marsh_Wren Rock_Wren
    Winter_Wren Common_Yellowthroat
""".split()
CUB_CLASSES = tuple(f"{k:03d}.{species}" for k, species in enumerate(CUB_SPECIES, start=1))

#: 22 of iNaturalist 2021's 10,000 species folders (their real names: 5-digit id, kingdom … species), from all over
#: the taxonomy, first and last included.
INAT_CLASSES = tuple("""
    00000_Animalia_Annelida_Clitellata_Haplotaxida_Lumbricidae_Lumbricus_terrestris
    00001_Animalia_Annelida_Polychaeta_Sabellida_Sabellidae_Sabella_spallanzanii
    00005_Animalia_Arthropoda_Arachnida_Araneae_Antrodiaetidae_Atypoides_riversi
    00403_Animalia_Arthropoda_Insecta_Coleoptera_Scarabaeidae_Trypoxylus_dichotomus
    01978_Animalia_Arthropoda_Insecta_Lepidoptera_Nymphalidae_Tegosa_claudina
    03111_Animalia_Chordata_Aves_Accipitriformes_Accipitridae_Accipiter_badius
    03112_Animalia_Chordata_Aves_Accipitriformes_Accipitridae_Accipiter_cooperii
    03114_Animalia_Chordata_Aves_Accipitriformes_Accipitridae_Accipiter_nisus
    03124_Animalia_Chordata_Aves_Accipitriformes_Accipitridae_Buteo_albonotatus
    03127_Animalia_Chordata_Aves_Accipitriformes_Accipitridae_Buteo_jamaicensis
    03167_Animalia_Chordata_Aves_Accipitriformes_Accipitridae_Ictinia_mississippiensis
    03932_Animalia_Chordata_Aves_Passeriformes_Meliphagidae_Meliphaga_lewinii
    04402_Animalia_Chordata_Aves_Pelecaniformes_Threskiornithidae_Platalea_ajaja
    04472_Animalia_Chordata_Aves_Piciformes_Ramphastidae_Ramphastos_toco
    04492_Animalia_Chordata_Aves_Procellariiformes_Procellariidae_Calonectris_diomedea
    04562_Animalia_Chordata_Aves_Strigiformes_Tytonidae_Tyto_alba
    04567_Animalia_Chordata_Aves_Suliformes_Anhingidae_Anhinga_rufa
    04575_Animalia_Chordata_Aves_Suliformes_Phalacrocoracidae_Phalacrocorax_brasilianus
    05328_Animalia_Mollusca_Gastropoda_Nudibranchia_Polyceridae_Triopha_maculata
    05432_Plantae_Tracheophyta_Magnoliopsida_Ranunculales_Papaveraceae_Papaver_rhoeas
    06344_Plantae_Tracheophyta_Liliopsida_Poales_Poaceae_Bromus_catharticus
    09999_Plantae_Tracheophyta_Polypodiopsida_Schizaeales_Lygodiaceae_Lygodium_japonicum
""".split())

#: INSTRE-S1's 100 object folders.
INSTRE_S1_CLASSES = tuple("""
    01a_canada_book 01b_panda_book 02a_parchis 02b_plate 03a_toy_oldman 03b_toy_taobao 04a_matryoshka
    04b_toy_youth 05a_foxtoy 05b_notebook 06a_caterpillar 06b_red_car 07a_toy_phone 07b_toy_cow 08a_crab
    08b_DDog 09a_toy_deer 09b_clay_figurine 10a_hello_kitty 10b_prince_book 11a_crunch 11b_postcard 12a_poker
    12b_mizimizi 13a_toy_car 13b_toy_man 14a_pocky 14b_Nestle 15a_dwarf 15b_porcelain_cat 16a_toy_woman
    16b_taiwan101 17a_flowerpot 17b_toy_cat 18a_Doraemon 18b_toy_dog 19a_correction_tape 19b_dog_sharpener
    20a_coconut_juice 20b_pechoin 21a_deli_penguin 21b_crest 22a_Linden_honey 22b_Oreo_cookies
    23a_Yunnan_Baiyao_Aerosol 23b_Verbatim 24a_huiyuan_juice 24b_fish_sticker 25a_Six_walnut 25b_nescafe
    26a_hersheys 26b_run_hou_tang 27a_china_unicom_card 27b_china_mobile_card 28a_Thermometer 28b_TopStrong_Cup
    29a_Extra_Chewing_Gum 29b_Pretz 30a_Nutrient_Book 30b_Corn_Shape_Pothook 31a_Aodiao_Chocolate_Roll
    31b_Blue_notebook 32a_Glue_stick 32b_bus_card 33a_Alice_Guitar_String_Packaging 33b_Pills_package
    34a_Caculator 34b_Chips_Ahoy 35a_toy_jeep 35b_toy_tractor 36a_disney_mat 36b_Lycium_chinensis
    37a_crazybird_notes 37b_zhangjunya 38a_new_year_pic 38b_stamp 39a_CRISPY 39b_yuji 40a_toy_carman
    40b_oldman_candle 41a_SevenUp 41b_mrbrown_coffee 42a_Luffy 42b_Chopper 43a_opera_face 43b_garden_expo
    44a_red_army 44b_tiny_girl 45a_5yuan 45b_1yuan 46a_god_of_fortune 46b_smiling_boy 47a_toy_golden_fish
    47b_wierd_fish 48a_502 48b_pear_book 49a_AstickMini 49b_HelloPanda 50a_toy_snowman 50b_sprike
""".split())

#: ObjectNet 1.0's 313 image folders and their labels (objectnet-1.0/mappings/folder_to_objectnet_label.json).
OBJECTNET_FOLDERS = {
    "squeegee": "Squeegee", "umbrella": "Umbrella", "eyeglasses": "Eyeglasses", "coaster": "Coaster",
    "winter_glove": "Winter glove", "pet_food_container": "Pet food container", "scissors": "Scissors",
    "computer_mouse": "Computer mouse", "still_camera": "Still Camera", "weight_scale": "Weight scale",
    "cutting_board": "Cutting board", "spatula": "Spatula", "plunger": "Plunger", "paper": "Paper",
    "paper_bag": "Paper bag", "microwave": "Microwave", "keyboard": "Keyboard", "standing_lamp": "Standing lamp",
    "chair": "Chair", "mixing_salad_bowl": "Mixing / Salad Bowl", "milk": "Milk", "blender": "Blender",
    "flashlight": "Flashlight", "floss_container": "Floss container", "rake": "Rake", "sandal": "Sandal",
    "book_closed": "Book (closed)", "extension_cable": "Extension cable", "drawer_open": "Drawer (open)",
    "tv": "TV", "backpack": "Backpack", "playing_cards": "Playing cards", "jar": "Jar", "frying_pan": "Frying pan",
    "bench": "Bench", "coffee_grinder": "Coffee grinder", "jam": "Jam", "tape": "Tape / duct tape",
    "dog_bed": "Dog bed", "throw_pillow": "Throw pillow", "orange": "Orange", "speaker": "Speaker",
    "paint_can": "Paint can", "hand_towel_or_rag": "Dishrag or hand towel", "hat": "Hat", "toaster": "Toaster",
    "match": "Match", "plate": "Plate", "ironing_board": "Ironing board", "alarm_clock": "Alarm clock",
    "sunglasses": "Sunglasses", "power_bar": "Power bar", "wine_glass": "Wine glass", "ladle": "Ladle",
    "ruler": "Ruler", "blanket": "Blanket", "contact_lens_case": "Contact lens case", "watch": "Watch",
    "trash_bin": "Trash bin", "vase": "Vase", "oven_mitts": "Oven mitts", "spoon": "Spoon", "thermos": "Thermos",
    "fan": "Fan", "egg_carton": "Egg carton", "lighter": "Lighter", "glue_container": "Glue container",
    "bottle_cap": "Bottle cap", "wallet": "Wallet", "coffee_table": "Coffee table",
    "nail_clippers": "Nail clippers", "cellphone_case": "Cellphone case", "canned_food": "Canned food",
    "letter_opener": "Letter opener", "stapler": "Stapler", "whisk": "Whisk", "tongs": "Tongs",
    "lettuce": "Lettuce", "shoelace": "Shoelace", "button": "Button", "hair_dryer": "Hair dryer",
    "bracelet": "Bracelet", "spray_bottle": "Spray bottle", "laptop_charger": "Laptop charger",
    "portable_heater": "Portable heater", "suit_jacket": "Suit jacket", "dress_shoe_men": "Dress shoe (men)",
    "rock": "Rock", "water_filter": "Water filter", "earbuds": "Earbuds", "biscuits": "Biscuits",
    "mouthwash": "Mouthwash", "slipper": "Slipper", "eraser_white_board": "Eraser (white board)",
    "bicycle": "Bicycle", "ziploc_bag": "Ziploc bag", "dish_soap": "Dish soap", "travel_case": "Travel case",
    "receipt": "Receipt", "boots": "Boots", "sponge": "Sponge", "full_sized_towel": "Bath towel",
    "flour_container": "Flour container", "pill_bottle": "Pill bottle", "candle": "Candle", "calendar": "Calendar",
    "tweezers": "Tweezers", "dvd_player": "DVD player", "plastic_wrap": "Plastic wrap", "ribbon": "Ribbon",
    "blouse": "Blouse", "walking_cane": "Walking cane", "leaf": "Leaf", "lipstick": "Lipstick",
    "hair_brush": "Hair brush", "night_light": "Night light", "kettle": "Kettle",
    "honey_container": "Honey container", "tarp": "Tarp", "ice": "Ice", "drinking_straw": "Drinking straw",
    "detergent": "Detergent", "mug": "Mug", "toilet_paper_roll": "Toilet paper roll", "wok": "Wok",
    "swimming_trunks": "Swimming trunks", "clothes_hamper": "Clothes hamper", "removable_blade": "Removable blade",
    "shampoo_bottle": "Shampoo bottle", "skirt": "Skirt", "loofah": "Loofah", "broom": "Broom",
    "photograph_printed": "Photograph (printed)", "multitool": "Multitool", "makeup": "Makeup",
    "nail_file": "Nail file", "brooch": "Brooch", "cork": "Cork", "coffee_french_press": "Coffee/French press",
    "toy": "Toy", "thermometer": "Thermometer", "hairclip": "Hairclip",
    "document_folder_closed": "Document folder (closed)", "pliers": "Pliers", "strainer": "Strainer",
    "comb": "Comb", "water_bottle": "Water bottle", "peeler": "Peeler", "monitor": "Monitor", "box": "Box",
    "pill_organizer": "Pill organizer", "stopper_sink_tub": "Stopper (sink/tub)", "walker": "Walker",
    "step_stool": "Step stool", "bills_money": "Bills (money)", "skateboard": "Skateboard",
    "running_shoe": "Running shoe", "coin_money": "Coin (money)", "magazine": "Magazine",
    "drying_rack_for_clothes": "Drying rack for clothes", "toothpaste": "Toothpaste", "paper_towel": "Paper towel",
    "remote_control": "Remote control", "sugar_container": "Sugar container", "dress_pants": "Dress pants",
    "scarf": "Scarf", "dress_shirt": "Dress shirt", "cheese": "Cheese", "can_opener": "Can opener",
    "shovel": "Shovel", "paintbrush": "Paintbrush", "tennis_racket": "Tennis racket", "battery": "Battery",
    "stuffed_animal": "Stuffed animal", "jeans": "Jeans", "tanktop": "Tanktop", "dust_pan": "Dust pan",
    "earring": "Earring", "tomato": "Tomato", "marker": "Marker", "makeup_brush": "Makeup brush", "ring": "Ring",
    "air_freshener": "Air freshener", "tablecloth": "Tablecloth", "teabag": "Teabag", "belt": "Belt",
    "razor": "Razor", "clothes_hanger": "Clothes hanger", "bookend": "Bookend", "sweater": "Sweater",
    "sock": "Sock", "usb_flash_drive": "Usb flash drive", "cellphone_charger": "Cellphone charger",
    "pepper_shaker": "Pepper shaker", "phone_landline": "Phone (landline)", "banana": "Banana",
    "printer": "Printer", "paperclip": "Paperclip", "fork": "Fork", "headphones_over_ear": "Headphones (over ear)",
    "cooking_oil_bottle": "Cooking oil bottle", "deodorant": "Deodorant", "usb_cable": "Usb cable",
    "shorts": "Shorts", "bread_loaf": "Bread loaf", "pillow": "Pillow", "drinking_cup": "Drinking Cup",
    "envelope": "Envelope", "mouse_pad": "Mouse pad", "chopstick": "Chopstick", "t-shirt": "T-shirt",
    "padlock": "Padlock", "ice_cube_tray": "Ice cube tray", "chess_piece": "Chess piece", "cereal": "Cereal",
    "hairtie": "Hairtie", "teapot": "Teapot", "board_game": "Board game", "butchers_knife": "Butcher's knife",
    "soup_bowl": "Soup Bowl", "beer_bottle": "Beer bottle", "nail_polish": "Nail polish",
    "hand_mirror": "Hand mirror", "combination_lock": "Combination lock", "nut_for_screw": "Nut for a screw",
    "nail_fastener": "Nail (fastener)", "figurine_or_statue": "Figurine or statue", "soap_bar": "Soap bar",
    "bucket": "Bucket", "binder_closed": "Binder (closed)", "video_camera": "Video Camera",
    "baseball_glove": "Baseball glove", "tape_measure": "Tape measure", "tissue": "Tissue",
    "coffee_beans": "Coffee beans", "scrub_brush": "Scrub brush", "drill": "Drill", "suitcase": "Suitcase",
    "newspaper": "Newspaper", "sleeping_bag": "Sleeping bag", "dress_shoe_women": "Dress shoe (women)",
    "trophy": "Trophy", "plastic_bag": "Plastic bag", "doormat": "Doormat", "webcam": "Webcam",
    "rolling_pin": "Rolling pin", "pencil": "Pencil", "table_knife": "Table knife", "bread_knife": "Bread knife",
    "toothbrush": "Toothbrush", "bathrobe": "Bathrobe", "paper_plates": "Paper plates", "placemat": "Placemat",
    "light_bulb": "Light bulb", "soap_dispenser": "Soap dispenser", "nightstand": "Nightstand", "pen": "Pen",
    "squeeze_bottle": "Squeeze bottle", "wheel": "Wheel", "dress": "Dress", "helmet": "Helmet", "lemon": "Lemon",
    "hammer": "Hammer", "lampshade": "Lampshade", "salt_shaker": "Salt shaker", "power_cable": "Power cable",
    "vacuum_cleaner": "Vacuum cleaner", "iron_for_clothes": "Iron (for clothes)", "laptop_open": "Laptop (open)",
    "poster": "Poster", "coffee_machine": "Coffee machine", "tie": "Tie", "cd_case": "CD case",
    "baseball_bat": "Baseball bat", "tablet_ipad": "Tablet / iPad", "bottle_opener": "Bottle opener",
    "briefcase": "Briefcase", "baking_sheet": "Baking sheet", "screw": "Screw", "pitcher": "Pitcher",
    "notepad": "Notepad", "tote_bag": "Tote bag", "raincoat": "Raincoat", "necklace": "Necklace",
    "band_aid": "Band Aid", "notebook": "Notebook", "measuring_cup": "Measuring cup",
    "weight_exercise": "Weight (exercise)", "handbag": "Handbag", "bike_pump": "Bike pump",
    "bottle_stopper": "Bottle stopper", "chocolate": "Chocolate", "safety_pin": "Safety pin",
    "plastic_cup": "Plastic cup", "butter": "Butter", "cellphone": "Cellphone",
    "drying_rack_for_dishes": "Drying rack for plates", "trash_bag": "Trash bag", "tray": "Tray",
    "wine_bottle": "Wine bottle", "whistle": "Whistle", "key_chain": "Key chain", "napkin": "Napkin",
    "desk_lamp": "Desk lamp", "first_aid_kit": "First aid kit", "bed_sheet": "Bed sheet", "beer_can": "Beer can",
    "wrench": "Wrench", "pop_can": "Pop can", "basket": "Basket", "leggings": "Leggings", "egg": "Egg",
    "sewing_kit": "Sewing kit",
}

assert len(CUB_CLASSES) == 200 and len(INSTRE_S1_CLASSES) == 100 and len(OBJECTNET_FOLDERS) == 313


def _check_source(entry: Mapping[str, Any], key: str, expected: Any, dataset_id: str) -> None:
    """The stand-in writes the layout the registry names; a registry that names another is refused."""
    found = (entry.get("source") or {}).get(key)
    if found != expected:
        raise StandinError(f"{dataset_id}: source.{key} is {found!r}; the stand-in writes the real layout, {expected!r}")


def _size(rng: np.random.Generator, longer: int, shorter: tuple[int, int], portrait: float = 0.3) -> tuple[int, int]:
    """(width, height) with the longer side ``longer`` and the shorter one drawn from ``shorter``."""
    other = int(rng.integers(shorter[0], shorter[1] + 1))
    return (other, longer) if rng.random() < portrait else (longer, other)


def _pick(rng: np.random.Generator, choices: Sequence[tuple[int, int]]) -> tuple[int, int]:
    return choices[int(rng.integers(len(choices)))]


def _class_folder_overrides(entry: Mapping[str, Any], digests: Mapping[str, Mapping[str, str]], classes: int,
                            images: int) -> dict[str, Any]:
    files = (entry.get("source") or {}).get("files") or []
    return {"files": [pins_for(spec, digests[spec["name"]]) for spec in files],
            "expect": {"classes": classes, "images": images}}


# --------------------------------------------------------------------------- CUB-200-2011

def make_cub200(dataset_id: str, entry: Mapping[str, Any], raw_dir: Path, *, seed: int, images_per_class: int) -> Path:
    rng = standin_rng(seed, dataset_id)
    archive = "CUB_200_2011.tgz"
    entry_files(entry, (archive,), dataset_id)
    _check_source(entry, "folder", f"{archive}.d/CUB_200_2011/images", dataset_id)
    begin_standin(raw_dir, [archive])
    per_class = max(2, int(images_per_class))
    members, lines = {}, {"images": [], "classes": [], "image_class_labels": [], "train_test_split": [], "bounding_boxes": []}
    image_id = 0
    for c, folder in enumerate(CUB_CLASSES):
        lines["classes"].append(f"{c + 1} {folder}")
        # File names capitalise every word of the species (001.Black_footed_Albatross → Black_Footed_Albatross_0046_18.jpg).
        stem = "_".join(word[:1].upper() + word[1:] for word in folder.split(".", 1)[1].split("_"))
        for number in sorted(int(n) for n in rng.choice(np.arange(1, 131), size=per_class, replace=False)):
            image_id += 1
            name = f"{folder}/{stem}_{number:04d}_{int(rng.integers(1, 800_000))}.jpg"
            width, height = _size(rng, 500, (281, 500))
            members[f"CUB_200_2011/images/{name}"] = jpeg(standin_pixels(rng, width, height, c))
            bw, bh = rng.uniform(0.3, 0.9) * width, rng.uniform(0.3, 0.9) * height
            bx, by = rng.uniform(0, width - bw), rng.uniform(0, height - bh)
            lines["images"].append(f"{image_id} {name}")
            lines["image_class_labels"].append(f"{image_id} {c + 1}")
            lines["train_test_split"].append(f"{image_id} {int(rng.random() < 0.51)}")
            lines["bounding_boxes"].append(f"{image_id} {bx:.1f} {by:.1f} {bw:.1f} {bh:.1f}")
    for kind, rows in lines.items():
        members[f"CUB_200_2011/{kind}.txt"] = ("\n".join(rows) + "\n").encode()
    members["CUB_200_2011/README"] = (
        b"Stand-in of CUB-200-2011 (bobench rehearsal): the real archive's layout with seeded pixels; the real data "
        b"are at https://www.vision.caltech.edu/datasets/cub_200_2011/\n")
    digests = {archive: write_file(raw_dir, archive, archive_bytes(archive, members))}
    return finish_standin(raw_dir, dataset_id, _class_folder_overrides(entry, digests, len(CUB_CLASSES), image_id),
                          files=digests, counts={"classes": len(CUB_CLASSES), "images": image_id}, seed=seed,
                          images_per_class=per_class,
                          layout="CUB_200_2011.tgz: CUB_200_2011/images/<NNN.Species>/<Species>_<NNNN>_<id>.jpg and the "
                                 "metadata .txt files")


# --------------------------------------------------------------------------- iNaturalist 2021 val

INAT_VAL_PER_CLASS = 10  # the real val split's images per species


def make_inaturalist_val(dataset_id: str, entry: Mapping[str, Any], raw_dir: Path, *, seed: int,
                         images_per_class: int) -> Path:
    rng = standin_rng(seed, dataset_id)
    archive = "val.tar.gz"
    entry_files(entry, (archive,), dataset_id)
    _check_source(entry, "folder", f"{archive}.d/val", dataset_id)
    begin_standin(raw_dir, [archive])
    per_class = max(INAT_VAL_PER_CLASS, int(images_per_class))
    members = {}
    for c, folder in enumerate(INAT_CLASSES):
        for _ in range(per_class):
            name = uuid.UUID(bytes=rng.bytes(16), version=4)
            width, height = _size(rng, 500, (281, 500), portrait=0.35)
            members[f"val/{folder}/{name}.jpg"] = jpeg(standin_pixels(rng, width, height, c))
    digests = {archive: write_file(raw_dir, archive, archive_bytes(archive, members))}
    return finish_standin(
        raw_dir, dataset_id, _class_folder_overrides(entry, digests, len(INAT_CLASSES), len(members)), files=digests,
        counts={"classes": len(INAT_CLASSES), "images": len(members)}, seed=seed, images_per_class=per_class,
        layout="val.tar.gz: val/<NNNNN_Kingdom_Phylum_Class_Order_Family_Genus_species>/<uuid>.jpg",
        deviations=[f"{len(INAT_CLASSES)} of the 10,000 species (real folder names): the loader takes its classes "
                    "from the folders, so every code path runs; 10,000 x 10 images would not be a small stand-in"],
    )


# --------------------------------------------------------------------------- ObjectNet

OBJECTNET_SIZES = ((640, 480), (480, 640))


def make_objectnet(dataset_id: str, entry: Mapping[str, Any], raw_dir: Path, *, seed: int, images_per_class: int) -> Path:
    rng = standin_rng(seed, dataset_id)
    entry_files(entry, (), dataset_id)
    _check_source(entry, "folder", "objectnet-1.0/images", dataset_id)
    begin_standin(raw_dir, ["objectnet-1.0"])
    per_class = max(2, int(images_per_class))
    written = 0
    for c, folder in enumerate(sorted(OBJECTNET_FOLDERS)):
        for _ in range(per_class):
            width, height = _pick(rng, OBJECTNET_SIZES)
            pixels = standin_pixels(rng, width, height, c)
            pixels[[0, -1], :] = (255, 0, 0)  # ObjectNet's 1-pixel red border
            pixels[:, [0, -1]] = (255, 0, 0)
            write_file(raw_dir, f"objectnet-1.0/images/{folder}/{rng.bytes(8).hex()[:15]}.png", png(Image.fromarray(pixels)))
            written += 1
    write_file(raw_dir, "objectnet-1.0/mappings/folder_to_objectnet_label.json",
               json.dumps(OBJECTNET_FOLDERS, indent=2).encode() + b"\n")
    return finish_standin(
        raw_dir, dataset_id, {"expect": {"classes": len(OBJECTNET_FOLDERS), "images": written}},
        counts={"classes": len(OBJECTNET_FOLDERS), "images": written}, seed=seed, images_per_class=per_class,
        layout="objectnet-1.0/images/<folder>/<15 hex>.png (the password-protected zip unzipped by hand), "
               "objectnet-1.0/mappings/folder_to_objectnet_label.json",
        deviations=["640 x 480 PNGs: ObjectNet's are larger phone photos (shorter side above 720 px); 313 folders of "
                    "full-size PNGs would make the stand-in slow to write"],
    )


# --------------------------------------------------------------------------- INSTRE

INSTRE_SIZES = ((640, 480), (480, 640))


def make_instre_s1(dataset_id: str, entry: Mapping[str, Any], raw_dir: Path, *, seed: int, images_per_class: int) -> Path:
    rng = standin_rng(seed, dataset_id)
    archive = "instre.tar.gz"
    entry_files(entry, (archive,), dataset_id)
    _check_source(entry, "folder", f"{archive}.d/INSTRE-S1", dataset_id)
    begin_standin(raw_dir, [archive])
    per_class = max(2, int(images_per_class))
    members = {}
    for c, folder in enumerate(INSTRE_S1_CLASSES):
        for number in range(1, per_class + 1):
            width, height = _pick(rng, INSTRE_SIZES)
            members[f"INSTRE-S1/{folder}/{number:03d}.jpg"] = jpeg(standin_pixels(rng, width, height, c))
            bw, bh = int(rng.uniform(0.3, 0.8) * width), int(rng.uniform(0.3, 0.8) * height)
            bx, by = int(rng.integers(0, width - bw)), int(rng.integers(0, height - bh))
            members[f"INSTRE-S1/{folder}/{number:03d}.txt"] = f"{bx} {by} {bw} {bh}\n".encode()
    images = sum(name.endswith(".jpg") for name in members)
    digests = {archive: write_file(raw_dir, archive, archive_bytes(archive, members))}
    return finish_standin(
        raw_dir, dataset_id, _class_folder_overrides(entry, digests, len(INSTRE_S1_CLASSES), images), files=digests,
        counts={"classes": len(INSTRE_S1_CLASSES), "images": images}, seed=seed, images_per_class=per_class,
        layout="instre.tar.gz: INSTRE-S1/<NNx_name>/<NNN>.jpg with <NNN>.txt boxes",
        deviations=["INSTRE-S2 and INSTRE-M, which the archive also holds, are left out (the loader reads INSTRE-S1 "
                    "only); the boxes' .txt format (x y w h) is assumed"],
    )


# --------------------------------------------------------------------------- Google Landmarks v2

GLDV2_SIZES = ((640, 480), (480, 640), (800, 600), (600, 800), (800, 533), (533, 800))


def make_gldv2_retrieval(dataset_id: str, entry: Mapping[str, Any], raw_dir: Path, *, seed: int,
                         images_per_class: int) -> Path:
    rng = standin_rng(seed, dataset_id)
    source = entry["source"]
    n_index, n_test = int(source["index_shards"]), int(source["test_shards"])
    solution = source["solution"]["name"]
    shards = {part: [f"{part}/images_{k:03d}.tar" for k in range(count)] for part, count in (("index", n_index), ("test", n_test))}
    listings = [f"md5sum/{part}/md5.images_{k:03d}.txt" for part, names in shards.items() for k in range(len(names))]
    begin_standin(raw_dir, [*shards["index"], *shards["test"], *listings, solution])
    per_landmark = max(2, int(images_per_class))

    def new_id() -> str:
        return rng.bytes(8).hex()

    # Index: landmarks of `per_landmark` images, and some images of landmarks no query shows; every shard holds some.
    landmarks = [[new_id() for _ in range(per_landmark)] for _ in range(max(1, n_index // 2))]
    index_ids = [i for group in landmarks for i in group] + [new_id() for _ in range(max(1, n_index // 10))]
    landmark_of = {i: k for k, group in enumerate(landmarks) for i in group}
    order = rng.permutation(len(index_ids))
    index_shard = {index_ids[j]: (n if n < n_index else int(rng.integers(n_index))) for n, j in enumerate(order)}
    # Test: two images per shard; about two thirds show an indexed landmark (the queries), the rest are Ignored.
    test_ids = [new_id() for _ in range(2 * n_test)]
    test_shard = {i: k // 2 for k, i in enumerate(test_ids)}
    rows, n_queries = [], 0
    query_landmark = {}
    for k, test_id in enumerate(test_ids):
        if k % 3 == 2:
            rows.append((test_id, "None", "Ignored"))
        else:
            landmark = int(rng.integers(len(landmarks)))
            query_landmark[test_id] = landmark
            rows.append((test_id, " ".join(landmarks[landmark]), "Public" if rng.random() < 0.35 else "Private"))
            n_queries += 1

    def image(image_id: str, tint: int) -> tuple[str, bytes]:
        width, height = _pick(rng, GLDV2_SIZES)
        return f"{image_id[0]}/{image_id[1]}/{image_id[2]}/{image_id}.jpg", jpeg(standin_pixels(rng, width, height, tint))

    contents: dict[str, dict[str, bytes]] = {name: {} for names in shards.values() for name in names}
    for image_id in index_ids:
        member, data = image(image_id, landmark_of.get(image_id, len(landmarks)))
        contents[shards["index"][index_shard[image_id]]][member] = data
    for image_id in test_ids:
        member, data = image(image_id, query_landmark.get(image_id, len(landmarks) + 1))
        contents[shards["test"][test_shard[image_id]]][member] = data
    digests = {}
    for part, names in shards.items():
        for k, name in enumerate(names):
            digests[name] = write_file(raw_dir, name, archive_bytes(name, dict(sorted(contents[name].items()))))
            # The md5 listing GLDv2 publishes next to each shard, where the loader looks before fetching one.
            write_file(raw_dir, f"md5sum/{part}/md5.images_{k:03d}.txt", f"{digests[name]['md5']}  images_{k:03d}.tar\n".encode())
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["id", "images", "Usage"])
    writer.writerows(sorted(rows))
    digests[solution] = write_file(raw_dir, solution, text.getvalue().encode())
    overrides = {"solution": pins_for(source["solution"], digests[solution]),
                 "expect": {**(source.get("expect") or {}), "index": len(index_ids), "queries": n_queries}}
    return finish_standin(
        raw_dir, dataset_id, overrides, files=digests, seed=seed, images_per_class=per_landmark,
        counts={"index": len(index_ids), "test": len(test_ids), "queries": n_queries, "landmarks": len(landmarks)},
        shards={"index": n_index, "test": n_test},
        layout="index/images_NNN.tar, test/images_NNN.tar (a/b/c/<id>.jpg), md5sum/<part>/md5.images_NNN.txt, "
               f"{solution} (id,images,Usage)",
        pins="the shards' md5s are the md5sum/ listings, written where the loader reads them (it fetches a listing "
             "only when it is missing); the solution file stays unpinned, as in the registry",
    )


# --------------------------------------------------------------------------- revisited Oxford and Paris

OXFORD_LANDMARKS = ("all_souls", "ashmolean", "balliol", "bodleian", "christ_church", "cornmarket", "hertford", "keble",
                    "magdalen", "pitt_rivers", "radcliffe_camera")
OXFORD_OTHERS = ("jesus", "new", "oriel", "trinity", "worcester", "oxford")
PARIS_ARCHIVES = {"paris_1-v1.tgz": ("defense", "eiffel", "general", "invalides", "louvre", "moulinrouge"),
                  "paris_2-v1.tgz": ("museedorsay", "notredame", "pantheon", "pompidou", "sacrecoeur", "triomphe")}
REVISITED_QUERIES = 70  # revisitop: the 55 original queries (5 per landmark) and 15 new ones
REVISITED_SIZES = ((1024, 768), (768, 1024))


def _revisited(rng: np.random.Generator, landmarks: Sequence[str], others: Sequence[str], per_landmark: int,
               name_of: Any) -> tuple[dict[str, Any], dict[str, tuple[str, int]]]:
    """revisitop's gnd dict and, per image name, (its prefix, tint); names are ``name_of(prefix, number)``."""
    numbers: dict[str, set[int]] = {}

    def new_name(prefix: str) -> str:
        taken = numbers.setdefault(prefix, set())
        while (number := int(rng.integers(0, 1500))) in taken:
            pass
        taken.add(number)
        return name_of(prefix, number)

    extra = rng.permutation([2] * 4 + [1] * 7)  # the 15 new queries, spread over the 11 landmarks
    queries = [(k, new_name(landmark)) for k, landmark in enumerate(landmarks) for _ in range(5 + int(extra[k]))]
    assert len(queries) == REVISITED_QUERIES
    tint = {}
    members = {k: [new_name(landmark) for _ in range(per_landmark)] for k, landmark in enumerate(landmarks)}
    for k, names in members.items():
        tint.update({name: (landmarks[k], k) for name in names})
    for j, prefix in enumerate(others):
        tint.update({new_name(prefix): (prefix, len(landmarks) + j) for _ in range(12 // len(others) or 1)})
    imlist = sorted(tint)
    position = {name: i for i, name in enumerate(imlist)}
    gnd = []
    for q, (k, name) in enumerate(queries):
        tint[name] = (landmarks[k], k)
        candidates = [position[n] for n in rng.permutation(members[k])]
        n_easy = 0 if q % 23 == 3 else int(rng.integers(0, min(3, per_landmark)))  # some queries have no easy positive
        n_hard = int(rng.integers(1, per_landmark - n_easy + 1))
        n_junk = int(rng.integers(0, per_landmark - n_easy - n_hard + 1))
        gnd.append({"bbx": [round(float(rng.uniform(0, 300)), 1), round(float(rng.uniform(0, 200)), 1),
                            round(float(rng.uniform(700, 767)), 1), round(float(rng.uniform(700, 767)), 1)],
                    "easy": sorted(candidates[:n_easy]), "hard": sorted(candidates[n_easy:n_easy + n_hard]),
                    "junk": sorted(candidates[n_easy + n_hard:n_easy + n_hard + n_junk])})
    return {"gnd": gnd, "imlist": imlist, "qimlist": [name for _, name in queries]}, tint


def _revisited_image(rng: np.random.Generator, tint: int) -> bytes:
    width, height = _pick(rng, REVISITED_SIZES)
    return jpeg(standin_pixels(rng, width, height, tint))


def _revisited_overrides(entry: Mapping[str, Any], digests: Mapping[str, Mapping[str, str]], gnd: Mapping[str, Any]) -> dict[str, Any]:
    files = entry["source"]["files"]
    return {"files": [pins_for(spec, digests[spec["name"]]) for spec in files],
            "expect": {"queries": len(gnd["qimlist"]), "database": len(gnd["imlist"])}}


def _gnd_bytes(gnd: Mapping[str, Any]) -> bytes:
    # Plain lists and floats, as revisitop's files hold (read back by a numpy-only unpickler).
    return pickle.dumps(dict(gnd), protocol=3)


def make_roxford5k(dataset_id: str, entry: Mapping[str, Any], raw_dir: Path, *, seed: int, images_per_class: int) -> Path:
    rng = standin_rng(seed, dataset_id)
    archive, ground_truth = "oxbuild_images-v1.tgz", "gnd_roxford5k.pkl"
    entry_files(entry, (archive, ground_truth), dataset_id)
    _check_source(entry, "ground_truth", ground_truth, dataset_id)
    begin_standin(raw_dir, [archive, ground_truth])
    gnd, tint = _revisited(rng, OXFORD_LANDMARKS, OXFORD_OTHERS, max(4, int(images_per_class) + 3),
                           lambda prefix, number: f"{prefix}_{number:06d}")
    members = {f"{name}.jpg": _revisited_image(rng, tint[name][1]) for name in sorted(tint)}  # flat, as oxbuild_images
    digests = {archive: write_file(raw_dir, archive, archive_bytes(archive, members)),
               ground_truth: write_file(raw_dir, ground_truth, _gnd_bytes(gnd))}
    return finish_standin(raw_dir, dataset_id, _revisited_overrides(entry, digests, gnd), files=digests, seed=seed,
                          images_per_class=int(images_per_class),
                          counts={"queries": len(gnd["qimlist"]), "database": len(gnd["imlist"])},
                          layout=f"{archive}: <landmark>_<NNNNNN>.jpg (flat); {ground_truth}: revisitop's dict")


def make_rparis6k(dataset_id: str, entry: Mapping[str, Any], raw_dir: Path, *, seed: int, images_per_class: int) -> Path:
    rng = standin_rng(seed, dataset_id)
    ground_truth = "gnd_rparis6k.pkl"
    entry_files(entry, (*PARIS_ARCHIVES, ground_truth), dataset_id)
    _check_source(entry, "ground_truth", ground_truth, dataset_id)
    begin_standin(raw_dir, [*PARIS_ARCHIVES, ground_truth])
    landmarks = [lm for folders in PARIS_ARCHIVES.values() for lm in folders if lm != "general"]
    gnd, tint = _revisited(rng, landmarks, ("general",), max(4, int(images_per_class) + 3),
                           lambda prefix, number: f"paris_{prefix}_{number:06d}")
    contents: dict[str, dict[str, bytes]] = {archive: {} for archive in PARIS_ARCHIVES}
    archive_of = {folder: archive for archive, folders in PARIS_ARCHIVES.items() for folder in folders}
    for name in sorted(tint):
        folder = tint[name][0]
        contents[archive_of[folder]][f"paris/{folder}/{name}.jpg"] = _revisited_image(rng, tint[name][1])
    # Paris ships 20 unreadable images, which revisitop leaves out of imlist: two of them here.
    for folder in ("louvre", "pompidou"):
        broken = f"paris_{folder}_{1500 + int(rng.integers(0, 99)):06d}"
        contents[archive_of[folder]][f"paris/{folder}/{broken}.jpg"] = _revisited_image(rng, 0)[:700]
    digests = {archive: write_file(raw_dir, archive, archive_bytes(archive, dict(sorted(members.items()))))
               for archive, members in contents.items()}
    digests[ground_truth] = write_file(raw_dir, ground_truth, _gnd_bytes(gnd))
    return finish_standin(raw_dir, dataset_id, _revisited_overrides(entry, digests, gnd), files=digests, seed=seed,
                          images_per_class=int(images_per_class),
                          counts={"queries": len(gnd["qimlist"]), "database": len(gnd["imlist"]), "unreadable": 2},
                          layout="paris_1-v1.tgz, paris_2-v1.tgz: paris/<landmark>/paris_<landmark>_<NNNNNN>.jpg; "
                                 f"{ground_truth}: revisitop's dict")


# --------------------------------------------------------------------------- Copydays

COPYDAYS_QUALITIES = (3, 5, 8, 10, 15, 20, 30, 50, 75)
COPYDAYS_CROPS = (10, 15, 20, 30, 40, 50, 60, 70, 80)
COPYDAYS_FILES = {"original": "copydays_original.tar.gz", "strong": "copydays_strong.tar.gz",
                  "jpegqual": "copydays_jpeg.tar.gz", "crops": "copydays_crop.tar.gz"}
COPYDAYS_SIZES = ((1600, 1200), (1200, 1600))


def _strong_attack(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    """Copydays' "strong" copies are edited by hand (print-scan, paint, blur, rotation): a rotation, a blur, a
    colour shift and a rescale here."""
    out = image.rotate(float(rng.uniform(-25, 25)), expand=True, fillcolor=(0, 0, 0))
    out = out.filter(ImageFilter.GaussianBlur(float(rng.uniform(1, 4))))
    out = ImageEnhance.Color(out).enhance(float(rng.uniform(0.2, 1.8)))
    scale = float(rng.uniform(0.4, 0.8))
    return out.resize((max(1, int(out.width * scale)), max(1, int(out.height * scale))), Image.BILINEAR)


def make_copydays(dataset_id: str, entry: Mapping[str, Any], raw_dir: Path, *, seed: int, images_per_class: int) -> Path:
    rng = standin_rng(seed, dataset_id)
    files = entry_files(entry, tuple(COPYDAYS_FILES.values()), dataset_id)
    _check_source(entry, "folders", {block: f"{archive}.d/{block}" for block, archive in COPYDAYS_FILES.items()}, dataset_id)
    begin_standin(raw_dir, COPYDAYS_FILES.values())
    n_originals = max(4, 2 * int(images_per_class))
    groups = sorted(int(g) for g in rng.choice(np.arange(2000, 2157), size=n_originals, replace=False))
    blocks: dict[str, dict[str, bytes]] = {block: {} for block in COPYDAYS_FILES}
    for k, group in enumerate(groups):
        width, height = _pick(rng, COPYDAYS_SIZES)
        image = Image.fromarray(standin_pixels(rng, width, height, k))
        name = f"{group}00.jpg"
        blocks["original"][f"original/{name}"] = jpeg(np.asarray(image), quality=95)
        for n in range(1, 1 + int(rng.choice([0, 1, 1, 2, 2, 3]) if k else 2)):  # 229 strong copies of 157 originals
            blocks["strong"][f"strong/{group}{n:02d}.jpg"] = jpeg(np.asarray(_strong_attack(rng, image)))
        for quality in COPYDAYS_QUALITIES:
            blocks["jpegqual"][f"jpegqual/{quality}/{name}"] = jpeg(np.asarray(image), quality=quality)
        for percent in COPYDAYS_CROPS:  # a central crop with `percent` of the surface cut away
            side = np.sqrt(1 - percent / 100)
            cw, ch = int(width * side), int(height * side)
            left, top = (width - cw) // 2, (height - ch) // 2
            blocks["crops"][f"crops/{percent}/{name}"] = jpeg(np.asarray(image.crop((left, top, left + cw, top + ch))))
    digests = {COPYDAYS_FILES[block]: write_file(raw_dir, COPYDAYS_FILES[block], archive_bytes(COPYDAYS_FILES[block], members))
               for block, members in blocks.items()}
    variants = sum(len(blocks[block]) for block in ("strong", "jpegqual", "crops"))
    overrides = {"files": [pins_for(spec, digests[spec["name"]]) for spec in files],
                 "expect": {"originals": n_originals, "variants": variants}}
    return finish_standin(raw_dir, dataset_id, overrides, files=digests, seed=seed, images_per_class=int(images_per_class),
                          counts={"originals": n_originals, "strong": len(blocks["strong"]), "variants": variants},
                          layout="copydays_{original,strong,jpeg,crop}.tar.gz: original/<GGGG>00.jpg, "
                                 "strong/<GGGG><NN>.jpg, jpegqual/<q>/<GGGG>00.jpg, crops/<p>/<GGGG>00.jpg")


RETRIEVAL_MAKERS = {
    "cub200": make_cub200, "inaturalist_val": make_inaturalist_val, "objectnet": make_objectnet,
    "instre_s1": make_instre_s1, "gldv2_retrieval": make_gldv2_retrieval, "roxford5k": make_roxford5k,
    "rparis6k": make_rparis6k, "copydays": make_copydays,
}
