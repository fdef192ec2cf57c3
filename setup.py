import shlex
from configparser import ConfigParser
from pathlib import Path

import setuptools
from setuptools.command.build_py import build_py

# note: all settings are in settings.ini; edit there, not here
config = ConfigParser(delimiters=['='])
config.read('settings.ini', encoding="utf-8")
cfg = config['DEFAULT']

cfg_keys = 'version description keywords author author_email'.split()
expected = cfg_keys + "lib_name user branch license status min_python audience language".split()
for o in expected: assert o in cfg, "missing expected setting: {}".format(o)
setup_cfg = {o:cfg[o] for o in cfg_keys}

licenses = {
    'apache2': ('Apache Software License 2.0','OSI Approved :: Apache Software License'),
    'mit': ('MIT License', 'OSI Approved :: MIT License'),
    'gpl2': ('GNU General Public License v2', 'OSI Approved :: GNU General Public License v2 (GPLv2)'),
    'gpl3': ('GNU General Public License v3', 'OSI Approved :: GNU General Public License v3 (GPLv3)'),
    'agpl3': ('GNU Affero General Public License v3', 'OSI Approved :: GNU Affero General Public License (AGPLv3)'),
    'bsd3': ('BSD License', 'OSI Approved :: BSD License'),
}
statuses = [ '0 - Pre-Planning', '1 - Planning', '2 - Pre-Alpha', '3 - Alpha',
    '4 - Beta', '5 - Production/Stable', '6 - Mature', '7 - Inactive' ]
py_versions = '3.7 3.8 3.9 3.10 3.11 3.12 3.13'.split()

requirements = ['packaging']
requirements += shlex.split(cfg.get('requirements', ''))
if cfg.get('pip_requirements'): requirements += shlex.split(cfg.get('pip_requirements', ''))
min_python = cfg['min_python']
lic = licenses.get(cfg['license'].lower(), (cfg['license'], None))
dev_requirements = (cfg.get('dev_requirements') or '').split()
# deepfake_nb: TensorFlow is an extra, so Colab keeps its own build: `[cpu]` (tensorflow-cpu) or `[gpu]` (tensorflow[and-cuda]);
# `[vit]` (KerasHub, the ViT-B/16 backbone) where the full `tensorflow` is installed (the Makefile installs KerasHub --no-deps over tensorflow-cpu)
extras = {'dev': dev_requirements, **{k: shlex.split(cfg.get(f'{k}_requirements', '')) for k in ('cpu', 'gpu', 'vit')}}
project_urls = {}
if cfg.get('doc_host'): project_urls["Documentation"] = cfg['doc_host'] + cfg.get('doc_baseurl', '')

# deepfake_nb: the experiment notebooks (nbs/NN_*.ipynb, which `deepfake-nb` runs through papermill) travel with the package as
# deepfake_nb/stages/*.ipynb, copied at build time so the repository keeps one copy of each (MANIFEST.in puts them in the sdist)
class BuildPyWithStages(build_py):
    "build_py that also copies the experiment notebooks into the built package's `stages/` folder"
    def run(self):
        super().run()
        if getattr(self, 'editable_mode', False): return      # an editable install runs the clone's nbs/ (core.nbs_dir)
        stages = sorted(Path('nbs').glob('[0-9][0-9]_*.ipynb'))
        if not any(nb.name.startswith('03_train') for nb in stages):
            raise SystemExit(f"setup.py: no experiment notebooks nbs/NN_*.ipynb under {Path.cwd()}: build from a clone or an sdist "
                             "made with MANIFEST.in (it includes them)")
        dest = Path(self.build_lib)/cfg['lib_path']/'stages'
        self.mkpath(str(dest))
        for old in dest.glob('*.ipynb'):                      # a notebook renamed or removed since the last build does not linger
            if not (Path('nbs')/old.name).exists(): old.unlink()
        for nb in stages: self.copy_file(str(nb), str(dest/nb.name), preserve_mode=False)

setuptools.setup(
    name = cfg['lib_name'],
    license = lic[0],
    classifiers = [
        'Development Status :: ' + statuses[int(cfg['status'])],
        'Intended Audience :: ' + cfg['audience'].title(),
        'Natural Language :: ' + cfg['language'].title(),
    ] + ['Programming Language :: Python :: '+o for o in py_versions[py_versions.index(min_python):]] + (['License :: ' + lic[1] ] if lic[1] else []),
    url = cfg['git_url'],
    packages = setuptools.find_packages(),
    include_package_data = True,
    package_data = {cfg['lib_path']: ['assets/*']},      # deepfake_nb: the YuNet model and its licence (MANIFEST.in puts them in the sdist)
    install_requires = requirements,
    extras_require=extras,
    dependency_links = cfg.get('dep_links','').split(),
    python_requires  = '>=' + cfg['min_python'],
    long_description = open('README.md', encoding="utf8").read(),
    long_description_content_type = 'text/markdown',
    zip_safe = False,
    entry_points = {
        'console_scripts': cfg.get('console_scripts','').split(),
        'nbdev': [f'{cfg.get("lib_path")}={cfg.get("lib_path")}._modidx:d']
    },
    project_urls = project_urls,
    cmdclass = {'build_py': BuildPyWithStages},
    **setup_cfg)

